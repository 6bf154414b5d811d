import { Dialog, showDialog } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError } from '../request';
import { formatNumber } from '../servers/format';
import { IHostsModel } from '../tokens';
import { IHost, IHostFields, IHostUpdate } from './types';
import { FormDialog } from '../formDialog';

/** What the host form holds: text as typed, so that nothing typed is lost on an error. */
export interface IHostFormValues {
  name: string;
  hostname: string;
  port: string;
  username: string;
  identity_file: string;
  use_agent: boolean;
  python: string;
  hourly_rate: string;
  /** One `GPU type = rate` per line. */
  gpu_rates: string;
  gpu_wait_minutes: string;
  /** One `GPU type or UUID = share, share...` per line: the shares (MPS) allowed. */
  gpu_fractions: string;
}

export type HostFormErrorKey = keyof IHostFormValues | 'general';
export type HostFormErrors = Partial<Record<HostFormErrorKey, string>>;

/** The form's values for a new host, or for editing one. */
export function hostFormValues(host?: IHost | null): IHostFormValues {
  if (!host) {
    return {
      name: '',
      hostname: '',
      port: '22',
      username: '',
      identity_file: '',
      use_agent: true,
      python: 'python3',
      hourly_rate: '',
      gpu_rates: '',
      gpu_wait_minutes: '30',
      gpu_fractions: ''
    };
  }
  return {
    name: host.name,
    hostname: host.hostname,
    port: String(host.port),
    username: host.username,
    identity_file: host.identity_file ?? '',
    use_agent: host.use_agent,
    python: host.python,
    hourly_rate:
      typeof host.hourly_rate === 'number'
        ? formatNumber(host.hourly_rate)
        : '',
    gpu_rates: Object.entries(host.gpu_rates ?? {})
      .map(([type, rate]) => `${type} = ${formatNumber(rate)}`)
      .join('\n'),
    gpu_wait_minutes: formatNumber(host.gpu_wait_minutes),
    gpu_fractions: Object.entries(host.gpu_fractions ?? {})
      .map(([gpu, shares]) => `${gpu} = ${shares.join(', ')}`)
      .join('\n')
  };
}

/**
 * `GPU type or UUID = share, share` lines as an object; the line at fault when one is not
 * like that (the server checks the shares themselves: each above 0 and below 1).
 */
export function parseGpuFractions(
  text: string
): { fractions: Record<string, number[]> } | { error: string } {
  const fractions: Record<string, number[]> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) {
      continue;
    }
    const at = line.lastIndexOf('=');
    const gpu = at > 0 ? line.slice(0, at).trim() : '';
    const shares = line
      .slice(at + 1)
      .split(',')
      .map(s => s.trim());
    if (!gpu || shares.some(s => s === '' || !Number.isFinite(Number(s)))) {
      return {
        error: `Line ${i + 1} ("${line}") is not GPU type or UUID = shares, e.g. NVIDIA A100-SXM4-80GB = 0.25, 0.5.`
      };
    }
    fractions[gpu] = shares.map(Number);
  }
  return { fractions };
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

/**
 * `GPU type = rate` lines as an object; the line at fault when one is not like that. GPU
 * types may contain spaces (NVML names, e.g. "NVIDIA A100-SXM4-80GB"): the last `=` splits.
 */
export function parseGpuRates(
  text: string
): { rates: Record<string, number> } | { error: string } {
  const rates: Record<string, number> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) {
      continue;
    }
    const at = line.lastIndexOf('=');
    const type = at > 0 ? line.slice(0, at).trim() : '';
    const rate = at > 0 ? Number(line.slice(at + 1).trim()) : NaN;
    if (!type || !Number.isFinite(rate) || line.slice(at + 1).trim() === '') {
      return {
        error: `Line ${i + 1} ("${line}") is not GPU type = rate, e.g. NVIDIA A100-SXM4-80GB = 2.5.`
      };
    }
    rates[type] = rate;
  }
  return { rates };
}

/**
 * The request for the form: every field for a new host; for an edited one, only what changed
 * (changing the hostname or port forgets the pinned key: the server asks to confirm it again).
 */
export function buildHostRequest(
  values: IHostFormValues,
  original?: IHost | null
): { body: IHostFields | IHostUpdate } | { errors: HostFormErrors } {
  const rates = parseGpuRates(values.gpu_rates);
  if ('error' in rates) {
    return { errors: { gpu_rates: rates.error } };
  }
  const fractions = parseGpuFractions(values.gpu_fractions);
  if ('error' in fractions) {
    return { errors: { gpu_fractions: fractions.error } };
  }
  const full: Record<string, unknown> = {
    name: values.name.trim(),
    hostname: values.hostname.trim(),
    port: numberOrText(values.port) ?? 22,
    username: values.username.trim(),
    identity_file: values.identity_file.trim() || null,
    use_agent: values.use_agent,
    python: values.python.trim() || 'python3',
    hourly_rate: numberOrText(values.hourly_rate) ?? null,
    gpu_rates: rates.rates,
    gpu_wait_minutes: numberOrText(values.gpu_wait_minutes) ?? 30,
    gpu_fractions: fractions.fractions
  };
  if (!original) {
    return { body: full as unknown as IHostFields };
  }
  const before = buildHostRequest(hostFormValues(original));
  const previous =
    'body' in before ? (before.body as Record<string, unknown>) : {};
  const changed: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(full)) {
    if (JSON.stringify(value) !== JSON.stringify(previous[key])) {
      changed[key] = value;
    }
  }
  return { body: changed as IHostUpdate };
}

/** Where to show the server's error about `field`. */
export function hostErrorKey(field: string | null): HostFormErrorKey {
  if (!field) {
    return 'general';
  }
  if (field.startsWith('gpu_rates')) {
    return 'gpu_rates';
  }
  if (field.startsWith('gpu_fractions')) {
    return 'gpu_fractions';
  }
  const known: HostFormErrorKey[] = [
    'name',
    'hostname',
    'port',
    'username',
    'identity_file',
    'use_agent',
    'python',
    'hourly_rate',
    'gpu_wait_minutes'
  ];
  return known.includes(field as HostFormErrorKey)
    ? (field as HostFormErrorKey)
    : 'general';
}

function Field(props: {
  name: HostFormErrorKey;
  label: string;
  hint?: string;
  error?: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <div
      className={
        'jp-ComputeServers-field' +
        (props.error ? ' jp-ComputeServers-fieldInvalid' : '')
      }
      data-field={props.name}
    >
      <label>
        <span className="jp-ComputeServers-fieldLabel">{props.label}</span>
        {props.children}
      </label>
      {props.hint && (
        <div className="jp-ComputeServers-fieldHint">{props.hint}</div>
      )}
      {props.error && (
        <div className="jp-ComputeServers-fieldError" role="alert">
          {props.error}
        </div>
      )}
    </div>
  );
}

export interface IHostFormProps {
  values: IHostFormValues;
  errors: HostFormErrors;
  disabled?: boolean;
  /** Whether an existing host is edited (changing how to reach it asks for its key again). */
  editing?: boolean;
  onChange: (update: (values: IHostFormValues) => IHostFormValues) => void;
}

/** The host dialog's body: how to reach the host, and its charge-back rates. */
export function HostForm(props: IHostFormProps): JSX.Element {
  const { values, errors, disabled } = props;
  const set = (key: keyof IHostFormValues, value: string | boolean) =>
    props.onChange(latest => ({ ...latest, [key]: value }));
  // Plain inputs without native constraints: a Dialog will not accept while an input is
  // :invalid, and would not say why. The server checks and explains.
  const input = (
    key: Exclude<keyof IHostFormValues, 'use_agent'>,
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
      onChange={event => set(key, event.target.value)}
      {...extra}
    />
  );
  return (
    <div className="jp-ComputeServers-createForm jp-ComputeServers-hostForm">
      {errors.general && (
        <div className="jp-ComputeServers-formError" role="alert">
          {errors.general}
        </div>
      )}
      <Field name="name" label="Name" error={errors.name}>
        {input('name', { placeholder: 'e.g. lab' })}
      </Field>
      <Field
        name="hostname"
        label="Host"
        hint={
          'A name or address, or a Host of your ~/.ssh/config.' +
          (props.editing
            ? ' Changing it (or the port) asks you to confirm its key again.'
            : '')
        }
        error={errors.hostname}
      >
        {input('hostname', { placeholder: 'e.g. lab.example.org' })}
      </Field>
      <Field
        name="port"
        label="Port"
        hint="0: from ~/.ssh/config"
        error={errors.port}
      >
        {input('port', { inputMode: 'numeric' })}
      </Field>
      <Field
        name="username"
        label="User"
        hint="Empty: from ~/.ssh/config, else your user name here"
        error={errors.username}
      >
        {input('username')}
      </Field>
      <Field
        name="identity_file"
        label="Private key file"
        hint="On the machine running Jupyter; empty: the ssh-agent and ~/.ssh keys"
        error={errors.identity_file}
      >
        {input('identity_file', { placeholder: '~/.ssh/id_ed25519' })}
      </Field>
      <Field name="use_agent" label="" error={errors.use_agent}>
        <span className="jp-ComputeServers-checkbox">
          <input
            type="checkbox"
            name="use_agent"
            checked={values.use_agent}
            disabled={disabled}
            onChange={event => set('use_agent', event.target.checked)}
          />{' '}
          Use the ssh-agent
        </span>
      </Field>
      <Field name="python" label="Python on the host" error={errors.python}>
        {input('python')}
      </Field>
      <Field
        name="hourly_rate"
        label="Charge-back per server-hour (optional)"
        error={errors.hourly_rate}
      >
        {input('hourly_rate', { inputMode: 'decimal' })}
      </Field>
      <Field
        name="gpu_rates"
        label="Charge-back per GPU-hour (optional)"
        hint="One GPU type = rate per line, e.g. NVIDIA A100-SXM4-80GB = 2.5"
        error={errors.gpu_rates}
      >
        <textarea
          className="jp-mod-styled"
          name="gpu_rates"
          rows={2}
          value={values.gpu_rates}
          disabled={disabled}
          spellCheck={false}
          onChange={event => set('gpu_rates', event.target.value)}
        />
      </Field>
      <Field
        name="gpu_wait_minutes"
        label="Wait for GPUs up to (minutes)"
        hint="How long a start waits in the host's queue when its GPUs are taken"
        error={errors.gpu_wait_minutes}
      >
        {input('gpu_wait_minutes', { inputMode: 'decimal' })}
      </Field>
      <Field
        name="gpu_fractions"
        label="GPU shares through MPS (optional)"
        hint={
          'One GPU type or UUID = the shares a server may take, per line, e.g. ' +
          'NVIDIA A100-SXM4-80GB = 0.25, 0.5. Shares of a GPU serve one Unix user at a ' +
          "time, and a fatal fault in one share's work ends its neighbours' (MPS)."
        }
        error={errors.gpu_fractions}
      >
        <textarea
          className="jp-mod-styled"
          name="gpu_fractions"
          rows={2}
          value={values.gpu_fractions}
          disabled={disabled}
          spellCheck={false}
          onChange={event => set('gpu_fractions', event.target.value)}
        />
      </Field>
    </div>
  );
}

/** The host dialog's body: what was typed, and the server's complaints about it. */
export class HostFormBody extends ReactWidget {
  constructor(
    private readonly model: IHostsModel,
    readonly original: IHost | null = null
  ) {
    super();
    this.addClass('jp-ComputeServers-createBody');
    this.values = hostFormValues(original);
  }

  values: IHostFormValues;
  errors: HostFormErrors = {};
  busy = false;
  /** The host once saved: the dialog's value. */
  saved: IHost | null = null;

  getValue(): IHost | null {
    return this.saved;
  }

  /** Send the form; on a refusal, show why next to the input at fault and answer false. */
  async submit(): Promise<boolean> {
    if (this.busy) {
      return false;
    }
    const request = buildHostRequest(this.values, this.original);
    if ('errors' in request) {
      this.errors = request.errors;
      this.update();
      return false;
    }
    this.busy = true;
    this.errors = {};
    this.update();
    try {
      if (this.original) {
        this.saved =
          Object.keys(request.body).length > 0
            ? await this.model.update(this.original.id, request.body)
            : this.original;
      } else {
        this.saved = await this.model.create(request.body as IHostFields);
      }
      return true;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const key =
        error instanceof ApiError ? hostErrorKey(error.field) : 'general';
      this.errors = { [key]: message };
      return false;
    } finally {
      this.busy = false;
      this.update();
    }
  }

  protected render(): JSX.Element {
    return (
      <HostForm
        values={this.values}
        errors={this.errors}
        disabled={this.busy}
        editing={this.original !== null}
        onChange={change => {
          const previous = this.values;
          this.values = change(previous);
          for (const key of Object.keys(this.values) as HostFormErrorKey[]) {
            if (
              this.values[key as keyof IHostFormValues] !==
              previous[key as keyof IHostFormValues]
            ) {
              delete this.errors[key];
            }
          }
          this.update();
        }}
      />
    );
  }
}

/** A dialog that stays open until the server accepts the host (refusals show in the form). */
export class HostDialog extends FormDialog<IHost | null> {
  constructor(form: HostFormBody) {
    super(form, {
      title: form.original ? `Edit ${form.original.name}` : 'Add a host',
      acceptLabel: form.original ? 'Save' : 'Add',
      acceptClass: 'jp-ComputeServers-hostSave',
      dialogClass: 'jp-ComputeServers-hostDialog',
      focusNodeSelector: 'input[name="name"]'
    });
  }
}

/** Ask for a new host, or edit one; resolves with it as saved, or null when cancelled. */
export async function openHostDialog(
  model: IHostsModel,
  host: IHost | null = null
): Promise<IHost | null> {
  const result = await new HostDialog(new HostFormBody(model, host)).launch();
  return result.button.accept ? result.value : null;
}

/** Ask before forgetting a host; then forget it. Resolves with whether it was deleted. */
export async function deleteHost(
  model: IHostsModel,
  host: IHost
): Promise<boolean> {
  const result = await showDialog({
    title: `Delete ${host.name}?`,
    body:
      `The host ${host.name} is forgotten, with its pinned key and inventory. Nothing on ` +
      'the machine changes. Hosts that servers use cannot be deleted: deprovision those first.',
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({
        label: 'Delete',
        className: 'jp-ComputeServers-confirm'
      })
    ],
    defaultButton: 0
  });
  if (!result.button.accept) {
    return false;
  }
  await model.remove(host.id);
  return true;
}
