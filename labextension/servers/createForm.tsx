import * as React from 'react';

import { formatNumber } from './format';
import { IHostOffering } from '../hosts/types';
import { ICloud, IServerConfig, IServerCreate } from './types';

/** What the create form holds: text as typed, so that nothing typed is lost on an error. */
export interface ICreateFormValues {
  name: string;
  cloud: string;
  color: string;
  image: string;
  image_tag: string;
  cpu: string;
  memory_gb: string;
  disk_gb: string;
  /** '' for no GPU. */
  gpu_type: string;
  gpu_count: string;
  /** The ssh cloud's host, by id ('' for none, or for other clouds). */
  host: string;
}

/** Where the form shows an error: an input's key, or `general` above the inputs. */
export type FormErrorKey = keyof ICreateFormValues | 'gpu' | 'general';

export type FormErrors = Partial<Record<FormErrorKey, string>>;

/** Colours offered to new servers in turn (matplotlib's tab10, as the server's default). */
export const SERVER_COLORS = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf'
];

const CONFIG_INPUTS = [
  'image',
  'image_tag',
  'cpu',
  'memory_gb',
  'disk_gb'
] as const;

function text(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'number' ? formatNumber(value) : String(value);
}

/** The form's configuration inputs set to a cloud's defaults. */
export function valuesForCloud(
  cloud: ICloud | undefined,
  base: ICreateFormValues
): ICreateFormValues {
  const defaults: Partial<IServerConfig> = cloud?.defaults ?? {};
  const next: ICreateFormValues = { ...base, cloud: cloud?.name ?? base.cloud };
  for (const key of CONFIG_INPUTS) {
    next[key] = text(defaults[key]);
  }
  const gpu = defaults.gpu;
  next.gpu_type = gpu ? gpu.type : '';
  next.gpu_count = gpu ? String(gpu.count) : '1';
  const hosts = cloud?.offerings.hosts ?? [];
  next.host = hosts.length > 0 ? String(hosts[0].id) : '';
  if (next.gpu_type && hosts.length > 0) {
    next.gpu_type = hostGpus(hosts[0]).some(g => g.type === next.gpu_type)
      ? next.gpu_type
      : '';
  }
  if (!next.image && cloud?.offerings.images?.length) {
    next.image = cloud.offerings.images[0].id;
  }
  return next;
}

/** A new form: the first usable cloud and its defaults. */
export function initialValues(
  clouds: ReadonlyArray<ICloud>,
  serverCount = 0
): ICreateFormValues {
  const cloud = clouds.find(c => c.available) ?? clouds[0];
  return valuesForCloud(cloud, {
    name: '',
    cloud: cloud?.name ?? '',
    color: SERVER_COLORS[serverCount % SERVER_COLORS.length],
    image: '',
    image_tag: '',
    cpu: '',
    memory_gb: '',
    disk_gb: '',
    gpu_type: '',
    gpu_count: '1',
    host: ''
  });
}

/** The GPU types of an ssh-cloud host, as the GPU select offers them. */
export function hostGpus(
  host: IHostOffering | undefined
): { type: string; max_count: number; free: number }[] {
  return (host?.gpus ?? []).map(g => ({
    type: g.type,
    max_count: g.count,
    free: g.free
  }));
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

/** A typed number as a number; what is not one is sent as typed, for the server to explain. */
function numberOrText(value: string): number | string | undefined {
  const trimmed = value.trim();
  if (trimmed === '') {
    return undefined;
  }
  const parsed = Number(trimmed);
  return Number.isFinite(parsed) ? parsed : trimmed;
}

/** The `POST servers` body for the form: only the configuration fields the cloud uses. */
export function buildCreateRequest(
  values: ICreateFormValues,
  cloud: ICloud | undefined
): IServerCreate {
  const fields = new Set(cloud?.config_fields ?? []);
  const config: Record<string, unknown> = {};
  for (const key of CONFIG_INPUTS) {
    if (!fields.has(key)) {
      continue;
    }
    const value =
      key === 'image' || key === 'image_tag'
        ? values[key].trim() || undefined
        : numberOrText(values[key]);
    if (value !== undefined) {
      config[key] = value;
    }
  }
  if (fields.has('gpu')) {
    config.gpu = values.gpu_type
      ? { type: values.gpu_type, count: numberOrText(values.gpu_count) ?? 1 }
      : null;
  }
  if (cloud?.offerings.hosts !== undefined) {
    const host = numberOrText(values.host);
    config.extra = host === undefined ? {} : { host };
  }
  const body: IServerCreate = {
    name: values.name.trim(),
    cloud: values.cloud,
    config: config as Partial<IServerConfig>
  };
  if (values.color) {
    body.color = values.color;
  }
  return body;
}

/** Where to show the server's error about `field` (its dotted path, e.g. `config.cpu`). */
export function errorKeyFor(field: string | null): FormErrorKey {
  if (!field) {
    return 'general';
  }
  const path = field.startsWith('config.') ? field.slice(7) : field;
  if (path === 'extra.host' || path === 'host') {
    return 'host';
  }
  if (path === 'gpu' || path.startsWith('gpu.')) {
    return path === 'gpu.count' ? 'gpu_count' : 'gpu';
  }
  const known: FormErrorKey[] = ['name', 'cloud', 'color', ...CONFIG_INPUTS];
  return known.includes(path as FormErrorKey)
    ? (path as FormErrorKey)
    : 'general';
}

function rangeHint(range: { min: number; max: number } | undefined): string {
  return range
    ? ` (${formatNumber(range.min)}–${formatNumber(range.max)})`
    : '';
}

export interface ICreateFormProps {
  clouds: ReadonlyArray<ICloud>;
  values: ICreateFormValues;
  errors: FormErrors;
  disabled?: boolean;
  /**
   * Called with how to change the values: a function of the latest values, since several
   * edits may come before the next render.
   */
  onChange: (update: (values: ICreateFormValues) => ICreateFormValues) => void;
}

/** One labelled input with its error below. */
function Field(props: {
  name: FormErrorKey;
  label: string;
  error?: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div
      className={
        // Not jp-mod-error: a Dialog refuses to accept while its body holds one.
        'jp-ComputeServers-field' +
        (props.error ? ' jp-ComputeServers-fieldInvalid' : '')
      }
      data-field={props.name}
    >
      <label>
        <span className="jp-ComputeServers-fieldLabel">{props.label}</span>
        {props.children}
      </label>
      {props.error && (
        <div className="jp-ComputeServers-fieldError" role="alert">
          {props.error}
        </div>
      )}
    </div>
  );
}

/** The sizes a cloud may let one choose, each a number typed into a text input. */
const SIZE_FIELDS = [
  { key: 'cpu', label: 'CPUs', inputMode: 'numeric' },
  { key: 'memory_gb', label: 'Memory, GB', inputMode: 'decimal' },
  { key: 'disk_gb', label: 'Disk, GB', inputMode: 'numeric' }
] as const;

/** The create dialog's body: name, cloud, and what that cloud lets one choose. */
export function CreateServerForm(props: ICreateFormProps): JSX.Element {
  const { clouds, values, errors, disabled } = props;
  const cloud = clouds.find(c => c.name === values.cloud);
  const fields = new Set(cloud?.config_fields ?? []);
  const offerings = cloud?.offerings ?? {};
  const set = (key: keyof ICreateFormValues, value: string) =>
    props.onChange(latest => ({ ...latest, [key]: value }));
  // Plain text inputs, no native constraints (min, max, required): a Dialog will not accept
  // while an input is :invalid, and would not say why. The server checks and explains.
  const input = (
    key: keyof ICreateFormValues,
    extra: React.InputHTMLAttributes<HTMLInputElement> = {}
  ) => (
    <input
      className="jp-mod-styled"
      name={key}
      value={values[key]}
      disabled={disabled}
      aria-invalid={errors[key] ? true : undefined}
      onChange={event => set(key, event.target.value)}
      {...extra}
    />
  );
  const image = offerings.images?.find(i => i.id === values.image);
  const hosts = offerings.hosts;
  const host = hosts?.find(h => String(h.id) === values.host);
  // On the ssh cloud, what the chosen host has: its GPU types, CPUs and memory.
  const gpus: { type: string; max_count: number; free?: number }[] = hosts
    ? hostGpus(host)
    : (offerings.gpus ?? []);
  const gpu = gpus.find(g => g.type === values.gpu_type);
  const range = (key: 'cpu' | 'memory_gb' | 'disk_gb') => {
    if (!hosts || key === 'disk_gb') {
      return offerings[key];
    }
    if (key === 'cpu') {
      return typeof host?.cpu === 'number'
        ? { min: 1, max: host.cpu }
        : undefined;
    }
    return host ? { min: 0.25, max: host.memory_gb } : undefined;
  };
  const wanted = Number(values.gpu_count);
  const queued =
    gpu && typeof gpu.free === 'number' && Number.isFinite(wanted)
      ? wanted > gpu.free
      : false;

  return (
    <div className="jp-ComputeServers-createForm">
      {errors.general && (
        <div className="jp-ComputeServers-formError" role="alert">
          {errors.general}
        </div>
      )}
      <Field name="name" label="Name" error={errors.name}>
        {input('name', {
          placeholder: 'e.g. gpu-box',
          autoComplete: 'off',
          spellCheck: false
        })}
      </Field>
      <Field name="cloud" label="Cloud" error={errors.cloud}>
        <select
          className="jp-mod-styled"
          name="cloud"
          value={values.cloud}
          disabled={disabled}
          onChange={event => {
            const next = clouds.find(c => c.name === event.target.value);
            props.onChange(latest => valuesForCloud(next, latest));
          }}
        >
          {clouds.map(c => (
            <option key={c.name} value={c.name} disabled={!c.available}>
              {c.available
                ? c.label || c.name
                : `${c.label || c.name} (unavailable: ${c.reason})`}
            </option>
          ))}
        </select>
      </Field>
      {cloud && (
        <div className="jp-ComputeServers-cloudDescription">
          {cloud.available
            ? cloud.description
            : `This cloud cannot be used now: ${cloud.reason}`}
        </div>
      )}
      {cloud?.available && (
        <>
          {fields.has('image') && (
            <Field name="image" label="Image" error={errors.image}>
              {offerings.images && offerings.images.length > 0 ? (
                <select
                  className="jp-mod-styled"
                  name="image"
                  value={values.image}
                  disabled={disabled}
                  onChange={event => {
                    const id = event.target.value;
                    const next = offerings.images?.find(i => i.id === id);
                    props.onChange(latest => ({
                      ...latest,
                      image: id,
                      image_tag: next?.tags.includes(latest.image_tag)
                        ? latest.image_tag
                        : (next?.tags[0] ?? '')
                    }));
                  }}
                >
                  {offerings.images.map(i => (
                    <option key={i.id} value={i.id}>
                      {i.label || i.id}
                    </option>
                  ))}
                </select>
              ) : (
                input('image')
              )}
            </Field>
          )}
          {fields.has('image_tag') && (
            <Field name="image_tag" label="Image tag" error={errors.image_tag}>
              {image && image.tags.length > 0 ? (
                <select
                  className="jp-mod-styled"
                  name="image_tag"
                  value={values.image_tag}
                  disabled={disabled}
                  onChange={event => set('image_tag', event.target.value)}
                >
                  {image.tags.map(tag => (
                    <option key={tag} value={tag}>
                      {tag}
                    </option>
                  ))}
                </select>
              ) : (
                input('image_tag')
              )}
            </Field>
          )}
          {hosts !== undefined && (
            <Field name="host" label="Host" error={errors.host}>
              <select
                className="jp-mod-styled"
                name="host"
                value={values.host}
                disabled={disabled}
                onChange={event => {
                  const id = event.target.value;
                  const next = hosts.find(h => String(h.id) === id);
                  props.onChange(latest => ({
                    ...latest,
                    host: id,
                    gpu_type: hostGpus(next).some(
                      g => g.type === latest.gpu_type
                    )
                      ? latest.gpu_type
                      : ''
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
            >
              {input(f.key, { inputMode: f.inputMode })}
            </Field>
          ))}
          {fields.has('gpu') && gpus.length > 0 && (
            <>
              <Field name="gpu_type" label="GPU" error={errors.gpu}>
                <select
                  className="jp-mod-styled"
                  name="gpu_type"
                  value={values.gpu_type}
                  disabled={disabled}
                  onChange={event => set('gpu_type', event.target.value)}
                >
                  <option value="">None</option>
                  {gpus.map(g => (
                    <option key={g.type} value={g.type}>
                      {typeof g.free === 'number'
                        ? `${g.type} (${g.free} of ${g.max_count} free)`
                        : g.type}
                    </option>
                  ))}
                </select>
              </Field>
              {values.gpu_type && (
                <Field
                  name="gpu_count"
                  label={`GPU count${gpu ? ` (1–${gpu.max_count})` : ''}`}
                  error={errors.gpu_count}
                >
                  {input('gpu_count', { inputMode: 'numeric' })}
                  {queued && (
                    <div className="jp-ComputeServers-fieldHint">
                      Only {gpu?.free} free now: the server waits in{' '}
                      {host?.name ?? 'the host'}&apos;s queue until enough free
                      up.
                    </div>
                  )}
                </Field>
              )}
            </>
          )}
        </>
      )}
      <Field name="color" label="Colour" error={errors.color}>
        {input('color', { type: 'color' })}
      </Field>
    </div>
  );
}
