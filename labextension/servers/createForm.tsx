import * as React from 'react';

import { IImageCatalogView, ServerConfigFields } from '../create/configFields';
import { IEstimateState } from '../create/estimate';
import { EstimateView } from '../create/estimateView';
import { Field } from '../create/field';
import { gcpOfferings, IHardwareValues } from '../create/hardware';
import { hostGpus } from '../create/hardwarePicker';
import {
  openstackDefaults,
  openstackExtra,
  OpenStackFields,
  openstackOfferings
} from '../create/openstack';
import {
  SLURM_INPUTS,
  slurmDefaults,
  slurmExtra,
  slurmOfferings
} from '../create/slurm';
import {
  buildWorkspace,
  IWorkspaceValues,
  WorkspaceFields,
  workspaceErrorKey,
  workspaceValues
} from '../mount/workspaceFields';
import { formatNumber } from './format';
import {
  ICloud,
  IServerConfig,
  IServerConfigFields,
  IServerCreate,
  ITeam
} from './types';

export { hostGpus, hostOptionLabel } from '../create/hardwarePicker';

/** What the create form holds: text as typed, so that nothing typed is lost on an error. */
export interface ICreateFormValues extends IHardwareValues, IWorkspaceValues {
  name: string;
  cloud: string;
  color: string;
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

/** The configuration fields typed as text (numbers included), in the order of the form. */
const CONFIG_INPUTS = [
  'image',
  'image_tag',
  'region',
  'zone',
  'machine_type',
  'cpu',
  'memory_gb',
  'disk_type',
  'disk_gb'
] as const;

/** Those sent as strings; the others are numbers. */
const TEXT_INPUTS: ReadonlySet<string> = new Set([
  'image',
  'image_tag',
  'region',
  'zone',
  'machine_type',
  'disk_type'
]);

function text(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'number' ? formatNumber(value) : String(value);
}

/** The form's configuration inputs set to a cloud's defaults. */
export function valuesForCloud<V extends ICreateFormValues>(
  cloud: ICloud | undefined,
  base: V
): V {
  const defaults: IServerConfigFields = cloud?.defaults ?? {};
  const next: V = { ...base, cloud: cloud?.name ?? base.cloud };
  for (const key of CONFIG_INPUTS) {
    next[key] = text(defaults[key]);
  }
  const gpu = defaults.gpu;
  next.gpu_type = gpu ? gpu.type : '';
  next.gpu_count = gpu ? String(gpu.count) : '1';
  next.spot = defaults.spot === true;
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
  if (slurmOfferings(cloud)) {
    Object.assign(next, slurmDefaults(defaults));
  }
  const openstack = openstackOfferings(cloud);
  if (openstack) {
    Object.assign(next, openstackDefaults(openstack));
  }
  const gcp = gcpOfferings(cloud);
  if (gcp) {
    next.region = next.region || gcp.default_region;
    const zones = gcp.regions.find(r => r.name === next.region)?.zones ?? [];
    next.zone = next.zone || gcp.default_zone || zones[0] || '';
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
    gpu_fraction: '',
    host: '',
    machine_type: '',
    region: '',
    zone: '',
    disk_type: '',
    spot: false,
    ...workspaceValues()
  });
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

/** The configuration the form describes: only the fields the cloud uses. */
export function buildConfig(
  values: IHardwareValues,
  cloud: ICloud | undefined
): Partial<IServerConfig> {
  const fields = new Set(cloud?.config_fields ?? []);
  const config: Record<string, unknown> = {};
  for (const key of CONFIG_INPUTS) {
    if (!fields.has(key)) {
      continue;
    }
    const value = TEXT_INPUTS.has(key)
      ? values[key].trim() || undefined
      : numberOrText(values[key]);
    if (value !== undefined) {
      config[key] = value;
    }
  }
  if (fields.has('gpu')) {
    const fraction = numberOrText(values.gpu_fraction ?? '');
    config.gpu = !values.gpu_type
      ? null
      : fraction !== undefined
        ? { type: values.gpu_type, count: 1, fraction }
        : { type: values.gpu_type, count: numberOrText(values.gpu_count) ?? 1 };
  }
  if (fields.has('spot')) {
    config.spot = values.spot;
  }
  if (cloud?.offerings.hosts !== undefined) {
    const host = numberOrText(values.host);
    config.extra = host === undefined ? {} : { host };
  }
  if (slurmOfferings(cloud)) {
    config.extra = slurmExtra(values);
  }
  const openstackExtras = openstackOfferings(cloud) && openstackExtra(values);
  if (openstackExtras) {
    config.extra = openstackExtras;
  }
  return config as Partial<IServerConfig>;
}

/** The `POST servers` body for the form: only the configuration fields the cloud uses. */
export function buildCreateRequest(
  values: ICreateFormValues,
  cloud: ICloud | undefined
): IServerCreate {
  const body: IServerCreate = {
    name: values.name.trim(),
    cloud: values.cloud,
    config: buildConfig(values, cloud)
  };
  if (values.color) {
    body.color = values.color;
  }
  if (values.workspace_mode !== 'synced') {
    body.workspace = buildWorkspace(values);
  }
  return body;
}

/** Where to show the server's error about `field` (its dotted path, e.g. `config.cpu`). */
export function errorKeyFor(field: string | null): FormErrorKey {
  if (!field) {
    return 'general';
  }
  const workspaceKey = workspaceErrorKey(field);
  if (workspaceKey) {
    return workspaceKey;
  }
  const path = field.startsWith('config.') ? field.slice(7) : field;
  if (path === 'extra.host' || path === 'host') {
    return 'host';
  }
  if (path === 'extra.network') {
    return 'network';
  }
  const slurmKey = SLURM_INPUTS.find(key => path === `extra.${key}`);
  if (slurmKey) {
    return slurmKey;
  }
  if (path === 'gpu' || path.startsWith('gpu.')) {
    return path === 'gpu.count'
      ? 'gpu_count'
      : path === 'gpu.fraction'
        ? 'gpu_fraction'
        : 'gpu';
  }
  const known: FormErrorKey[] = [
    'name',
    'cloud',
    'color',
    'spot',
    ...CONFIG_INPUTS
  ];
  return known.includes(path as FormErrorKey)
    ? (path as FormErrorKey)
    : 'general';
}

export interface ICreateFormProps {
  clouds: ReadonlyArray<ICloud>;
  values: ICreateFormValues;
  errors: FormErrors;
  disabled?: boolean;
  /** The image catalogue (without it, the cloud's `offerings.images`). */
  catalog?: IImageCatalogView;
  /** The live cost estimate (without it, none is shown). */
  estimate?: IEstimateState;
  /** Hours running per day for the estimate's projection, as typed. */
  hoursPerDay?: string;
  onHoursPerDay?: (text: string) => void;
  /** Team mode: the owner's quota and use (without it, or standalone, none is shown). */
  team?: ITeam | null;
  /**
   * Called with how to change the values: a function of the latest values, since several
   * edits may come before the next render.
   */
  onChange: (update: (values: ICreateFormValues) => ICreateFormValues) => void;
}

/** The create dialog's body: name, cloud, what that cloud lets one choose, and its cost. */
export function CreateServerForm(props: ICreateFormProps): JSX.Element {
  const { clouds, values, errors, disabled } = props;
  const cloud = clouds.find(c => c.name === values.cloud);
  const openstack = openstackOfferings(cloud);
  const set = (key: 'name' | 'color', value: string) =>
    props.onChange(latest => ({ ...latest, [key]: value }));
  // Plain text inputs, no native constraints (min, max, required): a Dialog will not accept
  // while an input is :invalid, and would not say why. The server checks and explains.
  const input = (
    key: 'name' | 'color',
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
        <ServerConfigFields
          cloud={cloud}
          values={values}
          errors={errors}
          disabled={disabled}
          catalog={props.catalog}
          onChange={props.onChange}
        />
      )}
      {cloud?.available && openstack && (
        <OpenStackFields
          offerings={openstack}
          values={values}
          errors={errors}
          disabled={disabled}
          onChange={props.onChange}
        />
      )}
      <WorkspaceFields
        values={values}
        errors={errors}
        disabled={disabled}
        onChange={props.onChange}
      />
      <Field name="color" label="Colour" error={errors.color}>
        {input('color', { type: 'color' })}
      </Field>
      {props.team && <QuotaLine team={props.team} />}
      {cloud?.available && props.estimate && (
        <EstimateView
          state={props.estimate}
          hoursPerDay={props.hoursPerDay ?? '24'}
          onHoursPerDay={text => props.onHoursPerDay?.(text)}
          disabled={disabled}
        />
      )}
    </div>
  );
}

/**
 * Team mode's quota, shown before a create: "You may start 1 more compute server (1 of 2
 * running); 1 of 2 GPUs left; 4 of 8 CPUs and 10 of 32 GB of RAM left on shared hosts; $12.50
 * of $50.00 left this month." Nothing standalone or without limits.
 */
export function quotaText(team: ITeam): string | null {
  if (!team.team_mode) {
    return null;
  }
  const parts: string[] = [];
  const servers = team.quota.running_servers;
  if (servers !== null) {
    const left = team.left.running_servers ?? 0;
    parts.push(
      `You may start ${left} more compute server${left === 1 ? '' : 's'} ` +
        `(${team.used.running_servers} of ${servers} running)`
    );
  }
  const gpus = team.quota.gpus;
  if (gpus !== null) {
    parts.push(
      `${team.left.gpus ?? 0} of ${gpus} GPU${gpus === 1 ? '' : 's'} left`
    );
  }
  const cpu = team.quota.cpu;
  if (cpu !== null) {
    parts.push(`${team.left.cpu ?? 0} of ${cpu} CPUs left on shared hosts`);
  }
  const memory = team.quota.memory_gb;
  if (memory !== null) {
    parts.push(
      `${team.left.memory_gb ?? 0} of ${memory} GB of RAM left on shared hosts`
    );
  }
  const spend = team.quota.monthly_spend;
  if (spend !== null) {
    parts.push(
      `${dollars(team.left.monthly_spend ?? 0)} of ${dollars(spend)} left this month`
    );
  }
  const cap = team.quota.gpus_per_host;
  if (cap !== null) {
    parts.push(
      `at most ${cap} GPU${cap === 1 ? '' : 's'} of one shared host at once`
    );
  }
  return parts.length ? parts.join('; ') + '.' : null;
}

function dollars(amount: number): string {
  return `$${amount.toFixed(2)}`;
}

function QuotaLine(props: { team: ITeam }): JSX.Element | null {
  const text = quotaText(props.team);
  return text ? <p className="jp-ComputeServers-quota">{text}</p> : null;
}
