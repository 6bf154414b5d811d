/**
 * A server's sync settings in a small dialog: auto-sync interval, sync before a kernel starts,
 * excludes, server-only directories, size cap. Saved with `PATCH servers/{id}` `{sync: {...}}`
 * (only what changed); a refusal shows by its field and the dialog stays open.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Field } from '../create/field';
import { ApiError } from '../request';
import { IComputeServersModel, IServer } from '../tokens';
import { ISyncSettings } from './types';
import { FormDialog } from '../formDialog';

/** The defaults of a server that says nothing about its sync (the API's). */
export const DEFAULT_SYNC_SETTINGS: ISyncSettings = {
  excludes: [],
  server_only: [],
  max_file_size_mb: 1024,
  auto_sync_minutes: null,
  before_kernel: true,
  pull_executable_config: [],
  max_delete_percent: 50
};

/** The dialog's inputs, as typed. */
export interface ISyncFormValues {
  excludes: string;
  server_only: string;
  /** Empty: no limit. */
  max_file_size_mb: string;
  auto_sync: boolean;
  auto_sync_minutes: string;
  before_kernel: boolean;
}

export type SyncErrorKey =
  | 'excludes'
  | 'server_only'
  | 'max_file_size_mb'
  | 'auto_sync_minutes'
  | 'before_kernel'
  | 'general';

export type SyncErrors = Partial<Record<SyncErrorKey, string>>;

export function syncFormValues(settings: ISyncSettings): ISyncFormValues {
  return {
    excludes: settings.excludes.join('\n'),
    server_only: settings.server_only.join('\n'),
    max_file_size_mb:
      settings.max_file_size_mb === null
        ? ''
        : String(settings.max_file_size_mb),
    auto_sync: settings.auto_sync_minutes !== null,
    auto_sync_minutes:
      settings.auto_sync_minutes === null
        ? '15'
        : String(settings.auto_sync_minutes),
    before_kernel: settings.before_kernel
  };
}

/** Lines as typed, blank ones dropped. */
export function parseLines(text: string): string[] {
  return text
    .split('\n')
    .map(line => line.replace(/\r$/, ''))
    .filter(line => line.trim() !== '');
}

/**
 * A whole number as typed; anything else goes to the server as typed, so that its refusal
 * names the field and says why.
 */
function parseCount(text: string): unknown {
  const trimmed = text.trim();
  const value = Number(trimmed);
  return trimmed !== '' && Number.isFinite(value) ? value : trimmed;
}

function sameLines(a: ReadonlyArray<string>, b: ReadonlyArray<string>) {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}

/** The PATCH body's `sync`: only the settings that changed. */
export function buildSyncUpdate(
  values: ISyncFormValues,
  original: ISyncSettings
): Record<string, unknown> {
  const update: Record<string, unknown> = {};
  const excludes = parseLines(values.excludes);
  if (!sameLines(excludes, original.excludes)) {
    update.excludes = excludes;
  }
  const serverOnly = parseLines(values.server_only);
  if (!sameLines(serverOnly, original.server_only)) {
    update.server_only = serverOnly;
  }
  const cap =
    values.max_file_size_mb.trim() === ''
      ? null
      : parseCount(values.max_file_size_mb);
  if (cap !== original.max_file_size_mb) {
    update.max_file_size_mb = cap;
  }
  const auto = values.auto_sync ? parseCount(values.auto_sync_minutes) : null;
  if (auto !== original.auto_sync_minutes) {
    update.auto_sync_minutes = auto;
  }
  if (values.before_kernel !== original.before_kernel) {
    update.before_kernel = values.before_kernel;
  }
  return update;
}

/** The input a 400's `field` names (`sync.excludes[3]` -> excludes). */
export function syncErrorKeyFor(field: string | null): SyncErrorKey {
  const match = /^(?:sync\.)?([a-z_]+)/.exec(field ?? '');
  const key = match?.[1];
  switch (key) {
    case 'excludes':
    case 'server_only':
    case 'max_file_size_mb':
    case 'auto_sync_minutes':
    case 'before_kernel':
      return key;
    default:
      return 'general';
  }
}

/** The line a field like `sync.excludes[3]` names, for the message ("line 4"). */
function lineOf(field: string | null): number | null {
  const match = /\[(\d+)\]$/.exec(field ?? '');
  return match ? Number(match[1]) + 1 : null;
}

export interface ISyncSettingsFormProps {
  serverName: string;
  values: ISyncFormValues;
  errors: SyncErrors;
  disabled?: boolean;
  /** The patterns every sync excludes first (shown on request), or null before read. */
  defaultExcludes: ReadonlyArray<string> | null;
  onChange: (values: ISyncFormValues) => void;
}

export function SyncSettingsForm(props: ISyncSettingsFormProps): JSX.Element {
  const { values, errors, disabled } = props;
  const set = (change: Partial<ISyncFormValues>) =>
    props.onChange({ ...values, ...change });
  return (
    <form
      className="jp-ComputeServers-syncSettings"
      onSubmit={event => event.preventDefault()}
    >
      {errors.general && (
        <div className="jp-ComputeServers-formError" role="alert">
          {errors.general}
        </div>
      )}
      <Field
        name="auto_sync_minutes"
        label="Auto-sync"
        hint="While the server runs, sync both ways this long after the last sync ended."
        error={errors.auto_sync_minutes}
      >
        <span className="jp-ComputeServers-syncInline">
          <input
            type="checkbox"
            name="auto_sync"
            checked={values.auto_sync}
            disabled={disabled}
            onChange={event => set({ auto_sync: event.target.checked })}
          />
          every
          <input
            type="text"
            inputMode="numeric"
            name="auto_sync_minutes"
            className="jp-ComputeServers-syncNumber"
            value={values.auto_sync_minutes}
            disabled={disabled || !values.auto_sync}
            onChange={event => set({ auto_sync_minutes: event.target.value })}
          />
          minutes
        </span>
      </Field>
      <Field
        name="before_kernel"
        label="Before a kernel starts"
        hint="Push the notebook's directory to the server before a kernel starts there. A failed sync is reported and the kernel starts anyway."
        error={errors.before_kernel}
      >
        <span className="jp-ComputeServers-syncInline">
          <input
            type="checkbox"
            name="before_kernel"
            checked={values.before_kernel}
            disabled={disabled}
            onChange={event => set({ before_kernel: event.target.checked })}
          />
          sync before a kernel starts
        </span>
      </Field>
      <Field
        name="excludes"
        label="Excludes"
        hint={
          <>
            One pattern a line, as in .gitignore (<code>*.csv</code>,{' '}
            <code>data/raw/</code>, <code>!keep.csv</code>), on both sides.{' '}
            {props.defaultExcludes && props.defaultExcludes.length > 0 && (
              <details className="jp-ComputeServers-syncDefaults">
                <summary>Always excluded first</summary>
                <code>{props.defaultExcludes.join('  ')}</code>
              </details>
            )}
          </>
        }
        error={errors.excludes}
      >
        <textarea
          name="excludes"
          rows={4}
          spellCheck={false}
          value={values.excludes}
          disabled={disabled}
          onChange={event => set({ excludes: event.target.value })}
        />
      </Field>
      <Field
        name="server_only"
        label="Server-only directories"
        hint="One directory a line, relative to the workspace: scratch space on the server that never syncs and that sync never touches on either side."
        error={errors.server_only}
      >
        <textarea
          name="server_only"
          rows={2}
          spellCheck={false}
          value={values.server_only}
          disabled={disabled}
          onChange={event => set({ server_only: event.target.value })}
        />
      </Field>
      <Field
        name="max_file_size_mb"
        label="Largest file (MB)"
        hint="Larger files are skipped and listed in the summary. Empty: no limit."
        error={errors.max_file_size_mb}
      >
        <input
          type="text"
          inputMode="numeric"
          name="max_file_size_mb"
          value={values.max_file_size_mb}
          disabled={disabled}
          onChange={event => set({ max_file_size_mb: event.target.value })}
        />
      </Field>
    </form>
  );
}

/** The dialog's body: what was typed and the server's complaints. */
export class SyncSettingsBody extends ReactWidget {
  constructor(
    private readonly model: IComputeServersModel,
    server: IServer,
    loadDefaults?: () => Promise<ReadonlyArray<string>>
  ) {
    super();
    this.addClass('jp-ComputeServers-syncSettingsBody');
    this.server = server;
    this.original = server.sync ?? DEFAULT_SYNC_SETTINGS;
    this.values = syncFormValues(this.original);
    if (loadDefaults) {
      loadDefaults()
        .then(defaults => {
          this.defaultExcludes = defaults;
          this._changed();
        })
        .catch(() => undefined);
    }
  }

  readonly server: IServer;
  original: ISyncSettings;
  values: ISyncFormValues;
  errors: SyncErrors = {};
  busy = false;
  defaultExcludes: ReadonlyArray<string> | null = null;
  saved: IServer | null = null;

  getValue(): IServer | null {
    return this.saved;
  }

  /** Send what changed; on a refusal, show why by the input at fault and answer false. */
  async submit(): Promise<boolean> {
    if (this.busy) {
      return false;
    }
    const sync = buildSyncUpdate(this.values, this.original);
    if (Object.keys(sync).length === 0) {
      this.saved = this.model.server(this.server.id) ?? this.server;
      return true;
    }
    this.busy = true;
    this.errors = {};
    this._changed();
    try {
      this.saved = await this.model.update(this.server.id, {
        sync: sync as Partial<ISyncSettings>
      });
      return true;
    } catch (error) {
      let message = error instanceof Error ? error.message : String(error);
      const field = error instanceof ApiError ? error.field : null;
      const line = lineOf(field);
      if (line !== null) {
        message = `Line ${line}: ${message}`;
      }
      this.errors = { [syncErrorKeyFor(field)]: message };
      return false;
    } finally {
      this.busy = false;
      this._changed();
    }
  }

  private _changed(): void {
    if (!this.isDisposed) {
      this.update();
    }
  }

  protected render(): JSX.Element {
    return (
      <SyncSettingsForm
        serverName={this.server.name}
        values={this.values}
        errors={this.errors}
        disabled={this.busy}
        defaultExcludes={this.defaultExcludes}
        onChange={values => {
          // An edited input's error is stale now.
          const previous = this.values;
          this.values = values;
          for (const key of Object.keys(values) as (keyof ISyncFormValues)[]) {
            if (values[key] !== previous[key]) {
              delete this.errors[
                key === 'auto_sync' ? 'auto_sync_minutes' : key
              ];
            }
          }
          this._changed();
        }}
      />
    );
  }
}

/** A dialog that closes only once the server accepted the settings. */
export class SyncSettingsDialog extends FormDialog<IServer | null> {
  constructor(form: SyncSettingsBody) {
    super(form, {
      title: `Sync settings of ${form.server.name}`,
      acceptLabel: 'Save',
      acceptClass: 'jp-ComputeServers-syncSettingsSave',
      dialogClass: 'jp-ComputeServers-syncSettingsDialog',
      focusNodeSelector: 'input[name="auto_sync"]'
    });
  }
}

/** Edit a server's sync settings; resolves with the server as saved, or null when cancelled. */
export async function openSyncSettingsDialog(
  model: IComputeServersModel,
  server: IServer,
  loadDefaults?: () => Promise<ReadonlyArray<string>>
): Promise<IServer | null> {
  const dialog = new SyncSettingsDialog(
    new SyncSettingsBody(model, server, loadDefaults)
  );
  const result = await dialog.launch();
  return result.button.accept ? result.value : null;
}
