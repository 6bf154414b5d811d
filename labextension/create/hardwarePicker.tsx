import * as React from 'react';

import { IHostOffering } from '../hosts/types';
import { formatNumber } from '../servers/format';
import { ICloud } from '../servers/types';
import { Field, rangeHint } from './field';
import {
  diskTypeOptions,
  findGcpGpu,
  findMachineType,
  gcpOfferings,
  gpuCountOptions,
  IHardwareValues,
  machineTypeLabel,
  machineTypeOptions,
  minDiskGb,
  regionsWithGpu,
  withDiskAtLeast,
  withGcpGpuCount,
  withGcpGpuType,
  withGcpMachineType,
  withGcpRegion,
  zoneOptions
} from './hardware';
import { imageGpu } from './images';
import {
  chosenPartition,
  partitionGpus,
  SlurmFields,
  slurmOfferings,
  slurmRange
} from './slurm';
import { IGcpOfferings, IImage } from './types';

/**
 * Why an input cannot change now (an edit of a server in a state that forbids it), by input;
 * `gpu_presence`: adding or removing a GPU (only while deprovisioned).
 */
export type HardwareLocks = Partial<
  Record<keyof IHardwareValues | 'gpu_presence', string>
>;

/** The GPU types of an ssh-cloud host, as the GPU select offers them. */
export function hostGpus(
  host: IHostOffering | undefined
): { type: string; max_count: number; free: number; fractions: number[] }[] {
  return (host?.gpus ?? []).map(g => ({
    type: g.type,
    max_count: g.count,
    free: g.free,
    fractions: g.fractions ?? []
  }));
}

/** What MPS does not give, said where a share is chosen. */
export const MPS_LIMITS =
  'A share runs through NVIDIA MPS: a fatal GPU fault in one server ends the work of every ' +
  'server sharing that GPU, and one MPS server serves one Unix user at a time, so shares of a ' +
  "GPU held by another user's servers wait in the queue. Use a MIG instance where isolation " +
  'matters.';

/** A share as the share select shows it: "1/4 of the GPU (25%)". */
export function fractionLabel(fraction: number): string {
  const quarters: Record<string, string> = {
    '0.25': '1/4',
    '0.5': '1/2',
    '0.75': '3/4'
  };
  const name = quarters[String(fraction)] ?? String(fraction);
  return `${name} of the GPU (${Math.round(fraction * 100)}%)`;
}

/** A host as the host select offers it: "lab (8 CPU · 31.2 GB · 2× NVIDIA A100, 1 free)". */
export function hostOptionLabel(host: IHostOffering): string {
  const parts: string[] = [];
  if (typeof host.cpu === 'number') {
    parts.push(`${host.cpu} CPU`);
  }
  if (typeof host.memory_gb === 'number') {
    parts.push(`${formatNumber(host.memory_gb)} GB`);
  }
  for (const gpu of host.gpus) {
    parts.push(`${gpu.count}× ${gpu.type}, ${gpu.free} free`);
  }
  return parts.length > 0 ? `${host.name} (${parts.join(' · ')})` : host.name;
}

export interface IHardwarePickerProps<V extends IHardwareValues> {
  cloud: ICloud;
  values: V;
  /** The server's complaints, by input (`gpu` for the GPU type). */
  errors: Partial<Record<string, string>>;
  /** The image chosen, from the catalogue (for its GPU needs and minimum disk). */
  image?: IImage;
  disabled?: boolean;
  locks?: HardwareLocks;
  /** Called with how to change the values (a function of the latest values). */
  onChange: (update: (values: V) => V) => void;
}

/** The sizes a cloud may let one choose, each a number typed into a text input. */
const SIZE_FIELDS = [
  { key: 'cpu', label: 'CPUs', inputMode: 'numeric' },
  { key: 'memory_gb', label: 'Memory, GB', inputMode: 'decimal' },
  { key: 'disk_gb', label: 'Disk, GB', inputMode: 'numeric' }
] as const;

/** What the image says about GPUs, under the GPU select. */
function gpuImageHint(image: IImage | undefined): string {
  const label = image?.label || image?.id;
  switch (imageGpu(image)) {
    case 'required':
      return `${label} needs a GPU.`;
    case 'none':
      return `${label} cannot use a GPU.`;
    default:
      return '';
  }
}

/** Hints one after the other, those that are set. */
function hints(...texts: (string | undefined | false)[]): string | undefined {
  const set = texts.filter((t): t is string => !!t);
  return set.length > 0 ? set.join(' ') : undefined;
}

/**
 * The hardware inputs of a cloud: the gcp cloud's region, zone, machine type, GPU, disk and
 * spot; the other clouds' host (ssh), CPUs, memory, disk and GPU. Only valid combinations are
 * offered; the server checks them again.
 */
export function HardwarePicker<V extends IHardwareValues>(
  props: IHardwarePickerProps<V>
): JSX.Element {
  const gcp = gcpOfferings(props.cloud);
  return gcp ? (
    <GcpHardware {...props} offerings={gcp} />
  ) : (
    <SizesAndGpus {...props} />
  );
}

/** Text inputs without native constraints: a Dialog will not accept while one is :invalid. */
function makeInput<V extends IHardwareValues>(props: IHardwarePickerProps<V>) {
  const { values, errors, disabled, locks = {} } = props;
  return (
    key: 'cpu' | 'memory_gb' | 'disk_gb' | 'gpu_count',
    extra: React.InputHTMLAttributes<HTMLInputElement> = {}
  ) => (
    <input
      className="jp-mod-styled"
      name={key}
      value={values[key]}
      disabled={disabled || !!locks[key]}
      aria-invalid={errors[key] ? true : undefined}
      onChange={event => {
        const value = event.target.value;
        props.onChange(latest => ({ ...latest, [key]: value }));
      }}
      {...extra}
    />
  );
}

/** A hint when the disk typed is below what the image (or boot image) needs. */
function diskHint(
  values: IHardwareValues,
  minimum: number,
  image: IImage | undefined
): string {
  const disk = Number(values.disk_gb);
  if (values.disk_gb.trim() === '' || !Number.isFinite(disk)) {
    return '';
  }
  if (disk >= minimum) {
    return '';
  }
  const what =
    image?.min_disk_gb === minimum
      ? image.label || image.id
      : 'This configuration';
  return `${what} needs at least ${formatNumber(minimum)} GB.`;
}

/** The local and ssh clouds: host, CPUs, memory, disk, GPU type and count. */
function SizesAndGpus<V extends IHardwareValues>(
  props: IHardwarePickerProps<V>
): JSX.Element {
  const { cloud, values, errors, disabled, image, locks = {} } = props;
  const fields = new Set(cloud.config_fields);
  const offerings = cloud.offerings;
  const input = makeInput(props);
  const set = (key: keyof IHardwareValues, value: string) =>
    props.onChange(latest => ({ ...latest, [key]: value }));
  const hosts = offerings.hosts;
  const host = hosts?.find(h => String(h.id) === values.host);
  // On the slurm cloud, what the chosen partition's nodes have.
  const slurm = slurmOfferings(cloud);
  const partition = slurm ? chosenPartition(slurm, values) : undefined;
  // On the ssh cloud, what the chosen host has: its GPU types, CPUs and memory.
  const gpus: {
    type: string;
    max_count: number;
    free?: number;
    fractions?: number[];
  }[] = slurm
    ? partitionGpus(partition)
    : hosts
      ? hostGpus(host)
      : (offerings.gpus ?? []);
  const gpu = gpus.find(g => g.type === values.gpu_type);
  const minimum = minDiskGb(cloud, values, image);
  const range = (key: 'cpu' | 'memory_gb' | 'disk_gb') => {
    if (key === 'disk_gb') {
      return offerings.disk_gb
        ? { min: minimum, max: offerings.disk_gb.max }
        : undefined;
    }
    if (slurm) {
      return slurmRange(partition, key);
    }
    if (!hosts) {
      return offerings[key];
    }
    if (key === 'cpu') {
      return typeof host?.cpu === 'number'
        ? { min: 1, max: host.cpu }
        : undefined;
    }
    return host ? { min: 0.25, max: host.memory_gb } : undefined;
  };
  const fractions = gpu?.fractions ?? [];
  const share = fractions.length > 0 ? (values.gpu_fraction ?? '') : '';
  const wanted = Number(values.gpu_count);
  const queued =
    gpu && typeof gpu.free === 'number' && Number.isFinite(wanted)
      ? wanted > gpu.free
      : false;
  const needs = imageGpu(image);
  const hasGpu = values.gpu_type !== '';

  return (
    <>
      {slurm && (
        <SlurmFields
          offerings={slurm}
          values={values}
          errors={errors}
          disabled={disabled}
          locks={locks}
          onChange={props.onChange}
        />
      )}
      {hosts !== undefined && (
        <Field name="host" label="Host" error={errors.host} hint={locks.host}>
          <select
            className="jp-mod-styled"
            name="host"
            value={values.host}
            disabled={disabled || !!locks.host}
            onChange={event => {
              const id = event.target.value;
              const next = hosts.find(h => String(h.id) === id);
              props.onChange(latest => ({
                ...latest,
                host: id,
                gpu_type: hostGpus(next).some(g => g.type === latest.gpu_type)
                  ? latest.gpu_type
                  : '',
                // The shares a host offers are its own.
                gpu_fraction: ''
              }));
            }}
          >
            {hosts.length === 0 && <option value="">No host ready</option>}
            {hosts.map(h => (
              <option key={h.id} value={String(h.id)}>
                {hostOptionLabel(h)}
              </option>
            ))}
          </select>
        </Field>
      )}
      {SIZE_FIELDS.filter(f => fields.has(f.key)).map(f => (
        <Field
          key={f.key}
          name={f.key}
          label={`${f.label}${rangeHint(range(f.key))}`}
          error={errors[f.key]}
          hint={hints(
            locks[f.key],
            f.key === 'disk_gb' && diskHint(values, minimum, image)
          )}
        >
          {input(f.key, { inputMode: f.inputMode })}
        </Field>
      ))}
      {fields.has('gpu') && gpus.length > 0 && (
        <>
          <Field
            name="gpu_type"
            label="GPU"
            error={errors.gpu}
            hint={hints(
              gpuImageHint(image),
              locks.gpu_type ?? locks.gpu_presence
            )}
          >
            <select
              className="jp-mod-styled"
              name="gpu_type"
              value={values.gpu_type}
              disabled={disabled || !!locks.gpu_type}
              onChange={event => {
                const type = event.target.value;
                const offered =
                  gpus.find(g => g.type === type)?.fractions ?? [];
                props.onChange(latest => ({
                  ...latest,
                  gpu_type: type,
                  gpu_fraction: offered.some(
                    f => String(f) === (latest.gpu_fraction ?? '')
                  )
                    ? latest.gpu_fraction
                    : ''
                }));
              }}
            >
              <option
                value=""
                disabled={
                  hasGpu && (needs === 'required' || !!locks.gpu_presence)
                }
              >
                None
              </option>
              {gpus.map(g => (
                <option
                  key={g.type}
                  value={g.type}
                  disabled={
                    g.type !== values.gpu_type &&
                    (needs === 'none' || (!hasGpu && !!locks.gpu_presence))
                  }
                >
                  {typeof g.free === 'number'
                    ? `${g.type} (${g.free} of ${g.max_count} free)`
                    : g.type}
                </option>
              ))}
            </select>
          </Field>
          {values.gpu_type && fractions.length > 0 && (
            <Field
              name="gpu_fraction"
              label="GPU share"
              error={errors.gpu_fraction}
              hint={hints(locks.gpu_fraction, share !== '' && MPS_LIMITS)}
            >
              <select
                className="jp-mod-styled"
                name="gpu_fraction"
                value={share}
                disabled={disabled || !!locks.gpu_fraction}
                onChange={event => set('gpu_fraction', event.target.value)}
              >
                <option value="">Whole GPU</option>
                {fractions.map(f => (
                  <option key={f} value={String(f)}>
                    {fractionLabel(f)}
                  </option>
                ))}
              </select>
            </Field>
          )}
          {values.gpu_type && share === '' && (
            <Field
              name="gpu_count"
              label={`GPU count${gpu ? ` (1–${gpu.max_count})` : ''}`}
              error={errors.gpu_count}
              hint={hints(
                locks.gpu_count,
                queued &&
                  `Only ${gpu?.free} free now: the server waits in ${
                    host?.name ?? 'the host'
                  }'s queue until enough free up.`
              )}
            >
              {input('gpu_count', { inputMode: 'numeric' })}
            </Field>
          )}
        </>
      )}
    </>
  );
}

/** The gcp cloud: region, zone, machine type, GPU type and count, disk type and size, spot. */
function GcpHardware<V extends IHardwareValues>(
  props: IHardwarePickerProps<V> & { offerings: IGcpOfferings }
): JSX.Element {
  const {
    cloud,
    offerings,
    values,
    errors,
    disabled,
    image,
    locks = {}
  } = props;
  const fields = new Set(cloud.config_fields);
  const input = makeInput(props);
  const minimum = minDiskGb(cloud, values, image);
  /** Apply a change, then raise the disk to what the new configuration needs. */
  const change = (update: (latest: V) => V) =>
    props.onChange(latest => {
      const next = update(latest);
      return withDiskAtLeast(next, minDiskGb(cloud, next, image));
    });
  const gpu = values.gpu_type
    ? findGcpGpu(offerings, values.gpu_type)
    : undefined;
  const machines = machineTypeOptions(offerings, values, image);
  const general = machines.filter(m => !m.gpu);
  const bundled = machines.filter(m => m.gpu);
  const zones = zoneOptions(offerings, values.region, values.gpu_type);
  const noZone = gpu && zones.length > 0 && !zones.some(z => z.hasGpu);
  const needs = imageGpu(image);
  const hasGpu = values.gpu_type !== '';
  const machine = findMachineType(offerings, values.machine_type);

  return (
    <>
      {fields.has('region') && (
        <Field
          name="region"
          label="Region"
          error={errors.region}
          hint={locks.region}
        >
          <select
            className="jp-mod-styled"
            name="region"
            value={values.region}
            disabled={disabled || !!locks.region}
            onChange={event => {
              const region = event.target.value;
              change(latest => withGcpRegion(offerings, latest, region));
            }}
          >
            {!offerings.regions.some(r => r.name === values.region) && (
              <option value={values.region}>{values.region}</option>
            )}
            {offerings.regions.map(r => (
              <option key={r.name} value={r.name}>
                {r.name}
              </option>
            ))}
          </select>
        </Field>
      )}
      {fields.has('zone') && (
        <Field
          name="zone"
          label="Zone"
          error={errors.zone}
          hint={hints(
            locks.zone,
            noZone &&
              `No zone of ${values.region} has ${gpu!.label}; regions with it: ${
                regionsWithGpu(offerings, gpu!.type).join(', ') || 'none'
              }.`,
            !offerings.live &&
              'Zones and GPUs from the built-in table: Google has the last word when the server starts.'
          )}
        >
          <select
            className="jp-mod-styled"
            name="zone"
            value={values.zone}
            disabled={disabled || !!locks.zone}
            onChange={event => {
              const zone = event.target.value;
              change(latest => ({ ...latest, zone }));
            }}
          >
            {!zones.some(z => z.zone === values.zone) && (
              <option value={values.zone}>{values.zone || '—'}</option>
            )}
            {zones.map(z => (
              <option
                key={z.zone}
                value={z.zone}
                disabled={!z.hasGpu && z.zone !== values.zone}
              >
                {z.hasGpu ? z.zone : `${z.zone} (no ${gpu?.label})`}
              </option>
            ))}
          </select>
        </Field>
      )}
      {fields.has('machine_type') && (
        <Field
          name="machine_type"
          label="Machine type"
          error={errors.machine_type}
          hint={locks.machine_type}
        >
          <select
            className="jp-mod-styled"
            name="machine_type"
            value={values.machine_type}
            disabled={disabled || !!locks.machine_type}
            onChange={event => {
              const name = event.target.value;
              change(latest => withGcpMachineType(offerings, latest, name));
            }}
          >
            {!machine && (
              <option value={values.machine_type}>
                {values.machine_type || '—'}
              </option>
            )}
            {general.length > 0 && (
              <optgroup label="General purpose">
                {general.map(m => (
                  <option key={m.name} value={m.name}>
                    {machineTypeLabel(m, offerings)}
                  </option>
                ))}
              </optgroup>
            )}
            {bundled.length > 0 && (
              <optgroup label="With GPUs">
                {bundled.map(m => (
                  <option
                    key={m.name}
                    value={m.name}
                    disabled={
                      m.name !== values.machine_type &&
                      (needs === 'none' || (!hasGpu && !!locks.gpu_presence))
                    }
                  >
                    {machineTypeLabel(m, offerings)}
                  </option>
                ))}
              </optgroup>
            )}
          </select>
        </Field>
      )}
      {fields.has('gpu') && offerings.gpus.length > 0 && (
        <>
          <Field
            name="gpu_type"
            label="GPU"
            error={errors.gpu}
            hint={hints(
              gpuImageHint(image),
              locks.gpu_type ?? locks.gpu_presence,
              gpu &&
                !gpu.attachable &&
                `${gpu.label} comes with its own machine types.`
            )}
          >
            <select
              className="jp-mod-styled"
              name="gpu_type"
              value={values.gpu_type}
              disabled={disabled || !!locks.gpu_type}
              onChange={event => {
                const type = event.target.value;
                change(latest =>
                  withGcpGpuType(
                    offerings,
                    latest,
                    type,
                    cloud.defaults.machine_type ?? undefined
                  )
                );
              }}
            >
              <option
                value=""
                disabled={
                  hasGpu && (needs === 'required' || !!locks.gpu_presence)
                }
              >
                None
              </option>
              {offerings.gpus.map(g => (
                <option
                  key={g.type}
                  value={g.type}
                  disabled={
                    g.type !== values.gpu_type &&
                    (needs === 'none' || (!hasGpu && !!locks.gpu_presence))
                  }
                >
                  {`${g.label} (${formatNumber(g.memory_gb)} GB)`}
                </option>
              ))}
            </select>
          </Field>
          {gpu && (
            <Field
              name="gpu_count"
              label="GPU count"
              error={errors.gpu_count}
              hint={locks.gpu_count}
            >
              <select
                className="jp-mod-styled"
                name="gpu_count"
                value={values.gpu_count}
                disabled={disabled || !!locks.gpu_count}
                onChange={event => {
                  const count = event.target.value;
                  change(latest => withGcpGpuCount(offerings, latest, count));
                }}
              >
                {!gpuCountOptions(offerings, gpu.type).includes(
                  Number(values.gpu_count)
                ) && (
                  <option value={values.gpu_count}>{values.gpu_count}</option>
                )}
                {gpuCountOptions(offerings, gpu.type).map(count => (
                  <option key={count} value={String(count)}>
                    {count}
                  </option>
                ))}
              </select>
            </Field>
          )}
        </>
      )}
      {fields.has('disk_type') && (
        <Field
          name="disk_type"
          label="Disk type"
          error={errors.disk_type}
          hint={locks.disk_type}
        >
          <select
            className="jp-mod-styled"
            name="disk_type"
            value={values.disk_type}
            disabled={disabled || !!locks.disk_type}
            onChange={event => {
              const diskType = event.target.value;
              change(latest => ({ ...latest, disk_type: diskType }));
            }}
          >
            {!offerings.disk_types.some(d => d.name === values.disk_type) && (
              <option value={values.disk_type}>
                {values.disk_type || '—'}
              </option>
            )}
            {diskTypeOptions(offerings, values.machine_type).map(
              ({ disk, refused }) => (
                <option
                  key={disk.name}
                  value={disk.name}
                  disabled={!!refused && disk.name !== values.disk_type}
                >
                  {refused ? `${disk.label} (${refused})` : disk.label}
                </option>
              )
            )}
          </select>
        </Field>
      )}
      {fields.has('disk_gb') && (
        <Field
          name="disk_gb"
          label={`Disk, GB${rangeHint({ min: minimum, max: offerings.disk_gb.max })}`}
          error={errors.disk_gb}
          hint={hints(locks.disk_gb, diskHint(values, minimum, image))}
        >
          {input('disk_gb', { inputMode: 'numeric' })}
        </Field>
      )}
      {fields.has('spot') && offerings.spot && (
        <Field name="spot" label="" error={errors.spot} hint={locks.spot}>
          <span className="jp-ComputeServers-checkbox">
            <input
              type="checkbox"
              name="spot"
              checked={values.spot}
              disabled={disabled || !!locks.spot}
              onChange={event => {
                const spot = event.target.checked;
                change(latest => ({ ...latest, spot }));
              }}
            />{' '}
            Spot VM: much cheaper, but Google may stop it at any time
          </span>
        </Field>
      )}
    </>
  );
}
