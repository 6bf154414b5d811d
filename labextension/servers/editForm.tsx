import * as React from 'react';

import { IImageCatalogView, ServerConfigFields } from '../create/configFields';
import { IEstimateState } from '../create/estimate';
import { EstimateView } from '../create/estimateView';
import { Field } from '../create/field';
import { HardwareLocks } from '../create/hardwarePicker';
import { slurmDefaults } from '../create/slurm';
import {
  buildConfig,
  errorKeyFor,
  FormErrorKey,
  ICreateFormValues
} from './createForm';
import {
  buildWorkspace,
  WorkspaceFields,
  workspaceValues
} from '../mount/workspaceFields';
import { formatNumber, isTransitional, stateLabel } from './format';
import {
  ICloud,
  IDailyStop,
  IServer,
  IServerConfig,
  IServerUpdate,
  ISpendLimit,
  ServerState
} from './types';

/** What the edit form holds: the create form's values, and the limits, as typed. */
export interface IEditFormValues extends ICreateFormValues {
  notes: string;
  /** Minutes; '' for no idle timeout. */
  idle_timeout_minutes: string;
  /** Dollars per `spend_period_days` days; '' (both) for no spend limit. */
  spend_amount: string;
  spend_period_days: string;
  /** 24-hour HH:MM; '' for no daily stop. */
  daily_stop_time: string;
  /** An IANA time zone; '' for the costs time zone of the Jupyter server. */
  daily_stop_timezone: string;
}

export type EditErrorKey =
  FormErrorKey | Exclude<keyof IEditFormValues, keyof ICreateFormValues>;

export type EditErrors = Partial<Record<EditErrorKey, string>>;

/** The browser's time zone (an IANA name), or '' when it cannot say. */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone ?? '';
  } catch {
    return '';
  }
}

function text(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'number' ? formatNumber(value) : String(value);
}

/** The form's values for a server as it is. */
export function editFormValues(server: IServer): IEditFormValues {
  const config: Partial<IServerConfig> = server.config ?? {};
  const host = config.extra?.host;
  return {
    name: server.name,
    cloud: server.cloud,
    color: server.color,
    image: text(config.image),
    image_tag: text(config.image_tag),
    cpu: text(config.cpu),
    memory_gb: text(config.memory_gb),
    disk_gb: text(config.disk_gb),
    gpu_type: config.gpu ? config.gpu.type : '',
    gpu_count: config.gpu ? String(config.gpu.count) : '1',
    gpu_fraction: text(config.gpu?.fraction),
    host: host === undefined || host === null ? '' : String(host),
    machine_type: text(config.machine_type),
    region: text(config.region),
    zone: text(config.zone),
    disk_type: text(config.disk_type),
    spot: config.spot === true,
    ...(server.cloud === 'slurm' ? slurmDefaults(config) : {}),
    ...workspaceValues(server),
    notes: server.notes ?? '',
    idle_timeout_minutes: text(server.idle_timeout_minutes),
    spend_amount: text(server.spend_limit?.amount),
    spend_period_days: text(server.spend_limit?.period_days),
    daily_stop_time: server.daily_stop?.time ?? '',
    // A new daily stop is in the browser's time zone unless told otherwise.
    daily_stop_timezone: server.daily_stop
      ? (server.daily_stop.timezone ?? '')
      : browserTimeZone()
  };
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

/** The spend limit typed: null when both inputs are empty (a missing half is for the server). */
function spendLimitOf(values: IEditFormValues): Record<string, unknown> | null {
  const amount = numberOrText(values.spend_amount);
  const days = numberOrText(values.spend_period_days);
  if (amount === undefined && days === undefined) {
    return null;
  }
  const limit: Record<string, unknown> = {};
  if (amount !== undefined) {
    limit.amount = amount;
  }
  if (days !== undefined) {
    limit.period_days = days;
  }
  return limit;
}

function dailyStopOf(values: IEditFormValues): IDailyStop | null {
  const time = values.daily_stop_time.trim();
  if (!time) {
    return null;
  }
  return { time, timezone: values.daily_stop_timezone.trim() || null };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** The configuration fields that differ from the server's (what `PATCH` and the estimate take). */
export function changedConfig(
  values: IEditFormValues,
  server: IServer,
  cloud: ICloud | undefined
): Partial<IServerConfig> {
  const now = buildConfig(values, cloud) as Record<string, unknown>;
  const before = buildConfig(editFormValues(server), cloud) as Record<
    string,
    unknown
  >;
  const changed: Record<string, unknown> = {};
  for (const key of new Set([...Object.keys(now), ...Object.keys(before)])) {
    if (!same(now[key], before[key])) {
      changed[key] = key in now ? now[key] : null;
    }
  }
  return changed as Partial<IServerConfig>;
}

/** The `PATCH servers/{id}` body: only what changed (empty when nothing did). */
export function buildUpdateRequest(
  values: IEditFormValues,
  server: IServer,
  cloud: ICloud | undefined
): IServerUpdate {
  const body: Record<string, unknown> = {};
  const name = values.name.trim();
  if (name !== server.name) {
    body.name = name;
  }
  if (values.color && values.color !== server.color) {
    body.color = values.color;
  }
  if (values.notes !== (server.notes ?? '')) {
    body.notes = values.notes;
  }
  const idle = numberOrText(values.idle_timeout_minutes) ?? null;
  if (!same(idle, server.idle_timeout_minutes ?? null)) {
    body.idle_timeout_minutes = idle;
  }
  const limit = spendLimitOf(values);
  const oldLimit: ISpendLimit | null = server.spend_limit
    ? {
        amount: server.spend_limit.amount,
        period_days: server.spend_limit.period_days
      }
    : null;
  if (!same(limit, oldLimit)) {
    body.spend_limit = limit;
  }
  const stop = dailyStopOf(values);
  const oldStop: IDailyStop | null = server.daily_stop
    ? {
        time: server.daily_stop.time,
        timezone: server.daily_stop.timezone ?? null
      }
    : null;
  if (!same(stop, oldStop)) {
    body.daily_stop = stop;
  }
  const workspace = buildWorkspace(values);
  if (!same(workspace, buildWorkspace(workspaceValues(server)))) {
    body.workspace = workspace;
  }
  if (cloud) {
    const config = changedConfig(values, server, cloud);
    if (Object.keys(config).length > 0) {
      body.config = config;
    }
  }
  return body as IServerUpdate;
}

/** Where to show the server's error about `field` in the edit form. */
export function editErrorKeyFor(field: string | null): EditErrorKey {
  switch (field) {
    case 'spend_limit':
    case 'spend_limit.amount':
      return 'spend_amount';
    case 'spend_limit.period_days':
      return 'spend_period_days';
    case 'daily_stop':
    case 'daily_stop.time':
      return 'daily_stop_time';
    case 'daily_stop.timezone':
      return 'daily_stop_timezone';
    case 'idle_timeout_minutes':
    case 'notes':
      return field;
    default:
      return errorKeyFor(field);
  }
}

/**
 * What cannot change in the server's state, and why (the editing rules of `PATCH
 * servers/{id}`): machine sizes and spot only while off or deprovisioned; image, region, zone,
 * disk type and adding or removing GPUs only while deprovisioned; the disk not while an
 * operation is under way. The server enforces them too (409, naming the field).
 */
export function editLocks(state: ServerState | string): HardwareLocks {
  if (state === 'deprovisioned') {
    return {};
  }
  const label = stateLabel(state).toLowerCase();
  const deprovisioned = `Changes only while deprovisioned (it is ${label}).`;
  const locks: HardwareLocks = {
    image: deprovisioned,
    image_tag: deprovisioned,
    region: deprovisioned,
    zone: deprovisioned,
    disk_type: deprovisioned,
    gpu_presence: `Adding or removing a GPU needs a new machine: only while deprovisioned (it is ${label}).`
  };
  if (state !== 'off') {
    const off = `Changes only while off or deprovisioned (it is ${label}): stop it first.`;
    for (const key of [
      'machine_type',
      'cpu',
      'memory_gb',
      'gpu_type',
      'gpu_count',
      'gpu_fraction',
      'spot',
      'host'
    ] as const) {
      locks[key] = off;
    }
  }
  if (isTransitional(state)) {
    locks.disk_gb = `The disk cannot be resized while the server is ${label}.`;
  }
  return locks;
}

export interface IEditFormProps {
  server: IServer;
  /** The server's cloud, when enabled (without it, only name, limits and notes can change). */
  cloud: ICloud | undefined;
  values: IEditFormValues;
  errors: EditErrors;
  disabled?: boolean;
  catalog?: IImageCatalogView;
  estimate?: IEstimateState;
  hoursPerDay?: string;
  onHoursPerDay?: (text: string) => void;
  onChange: (update: (values: IEditFormValues) => IEditFormValues) => void;
}

/**
 * The edit dialog's body: name and colour, the image and hardware (as far as the server's
 * state allows), the automatic stops (idle timeout, spend limit, daily stop), notes, and the
 * live cost of the configuration.
 */
export function EditServerForm(props: IEditFormProps): JSX.Element {
  const { server, cloud, values, errors, disabled } = props;
  type TextKey =
    | 'name'
    | 'color'
    | 'idle_timeout_minutes'
    | 'spend_amount'
    | 'spend_period_days'
    | 'daily_stop_time'
    | 'daily_stop_timezone';
  const input = (
    key: TextKey,
    extra: React.InputHTMLAttributes<HTMLInputElement> = {}
  ) => (
    <input
      className="jp-mod-styled"
      name={key}
      value={values[key]}
      disabled={disabled}
      aria-invalid={errors[key] ? true : undefined}
      autoComplete="off"
      spellCheck={false}
      onChange={event => {
        const value = event.target.value;
        props.onChange(latest => ({ ...latest, [key]: value }));
      }}
      {...extra}
    />
  );
  const usable = cloud?.available ?? false;
  return (
    <div className="jp-ComputeServers-createForm jp-ComputeServers-editForm">
      {errors.general && (
        <div className="jp-ComputeServers-formError" role="alert">
          {errors.general}
        </div>
      )}
      <div className="jp-ComputeServers-fieldRow">
        <Field name="name" label="Name" error={errors.name}>
          {input('name')}
        </Field>
        <Field name="color" label="Colour" error={errors.color}>
          {input('color', { type: 'color' })}
        </Field>
      </div>
      <div className="jp-ComputeServers-cloudDescription">
        On {cloud?.label || server.cloud},{' '}
        {stateLabel(server.state).toLowerCase()}
        {cloud && !cloud.available
          ? `. Its hardware cannot be edited now: ${cloud.reason}`
          : !cloud
            ? `. The ${server.cloud} cloud is not enabled here: its hardware cannot be edited.`
            : '.'}
      </div>
      {cloud && usable && (
        <ServerConfigFields
          cloud={cloud}
          values={values}
          errors={errors}
          disabled={disabled}
          catalog={props.catalog}
          locks={editLocks(server.state)}
          onChange={props.onChange}
        />
      )}
      <WorkspaceFields
        values={values}
        errors={errors}
        disabled={disabled}
        onChange={props.onChange}
      />
      <h3 className="jp-ComputeServers-sectionTitle">Automatic stops</h3>
      <Field
        name="idle_timeout_minutes"
        label="Idle timeout, minutes"
        hint="Stopped after this long with no kernel activity, terminal input or GPU use; empty: never."
        error={errors.idle_timeout_minutes}
      >
        {input('idle_timeout_minutes', {
          inputMode: 'numeric',
          placeholder: 'never'
        })}
      </Field>
      <div className="jp-ComputeServers-fieldRow">
        <Field
          name="spend_amount"
          label="Spend limit, $"
          error={errors.spend_amount}
        >
          {input('spend_amount', { inputMode: 'decimal', placeholder: 'none' })}
        </Field>
        <Field
          name="spend_period_days"
          label="per days"
          error={errors.spend_period_days}
        >
          {input('spend_period_days', {
            inputMode: 'numeric',
            placeholder: 'e.g. 7'
          })}
        </Field>
      </div>
      <div className="jp-ComputeServers-fieldHint">
        Reaching the limit stops the server; you are warned at 80%. Both empty:
        no limit.
      </div>
      <div className="jp-ComputeServers-fieldRow">
        <Field
          name="daily_stop_time"
          label="Daily stop at (HH:MM)"
          error={errors.daily_stop_time}
        >
          {input('daily_stop_time', { placeholder: 'e.g. 19:00' })}
        </Field>
        <Field
          name="daily_stop_timezone"
          label="Time zone"
          error={errors.daily_stop_timezone}
        >
          {input('daily_stop_timezone', {
            placeholder: "the Jupyter server's"
          })}
        </Field>
      </div>
      <Field name="notes" label="Notes" error={errors.notes}>
        <textarea
          className="jp-mod-styled"
          name="notes"
          rows={3}
          value={values.notes}
          disabled={disabled}
          onChange={event => {
            const notes = event.target.value;
            props.onChange(latest => ({ ...latest, notes }));
          }}
        />
      </Field>
      {usable && props.estimate && (
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
