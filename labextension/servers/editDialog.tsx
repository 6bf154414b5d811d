import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ImageCatalogState } from '../create/catalogState';
import { EstimateTracker, parseHoursPerDay } from '../create/estimate';
import { ApiError } from '../request';
import { IComputeServersModel } from '../tokens';
import {
  buildUpdateRequest,
  changedConfig,
  EditErrorKey,
  EditErrors,
  editErrorKeyFor,
  editFormValues,
  EditServerForm,
  IEditFormValues
} from './editForm';
import { IServer } from './types';
import { FormDialog } from '../formDialog';

/** The edit dialog's body: what was typed, the server's complaints, the live estimate. */
export class EditServerBody extends ReactWidget {
  constructor(
    private readonly model: IComputeServersModel,
    server: IServer,
    options: { estimateDelay?: number } = {}
  ) {
    super();
    this.addClass('jp-ComputeServers-createBody');
    this.addClass('jp-ComputeServers-editBody');
    this.original = server;
    this.values = editFormValues(server);
    this.catalog = new ImageCatalogState({
      fetch: includeUntested => model.images(includeUntested),
      changed: () => this._changed()
    });
    this.estimate = new EstimateTracker({
      fetch: body => model.estimate(body),
      delay: options.estimateDelay,
      changed: () => this._changed()
    });
    // The server's state decides what may change: follow it while the dialog is open.
    model.changed.connect(this._serverChanged, this);
    void this.catalog.load();
    this._estimate();
  }

  /** The server as it was when the dialog opened (or last saved). */
  original: IServer;
  values: IEditFormValues;
  errors: EditErrors = {};
  busy = false;
  /** The server once saved: the dialog's value. */
  saved: IServer | null = null;
  readonly catalog: ImageCatalogState;
  readonly estimate: EstimateTracker;
  hoursPerDay = '24';

  /** Re-render, unless closed (an answer may arrive after the dialog is gone). */
  private _changed(): void {
    if (!this.isDisposed) {
      this.update();
    }
  }

  getValue(): IServer | null {
    return this.saved;
  }

  dispose(): void {
    this.model.changed.disconnect(this._serverChanged, this);
    this.estimate.dispose();
    super.dispose();
  }

  /** The server as the list has it now (its state may have changed since the dialog opened). */
  get server(): IServer {
    return this.model.server(this.original.id) ?? this.original;
  }

  get cloud() {
    return this.model.clouds.find(c => c.name === this.original.cloud);
  }

  /** Send what changed; on a refusal, show why next to the input at fault and answer false. */
  async submit(): Promise<boolean> {
    if (this.busy) {
      return false;
    }
    const body = buildUpdateRequest(this.values, this.original, this.cloud);
    if (Object.keys(body).length === 0) {
      this.saved = this.server;
      return true;
    }
    this.busy = true;
    this.errors = {};
    this.update();
    try {
      this.saved = await this.model.update(this.original.id, body);
      return true;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const key =
        error instanceof ApiError ? editErrorKeyFor(error.field) : 'general';
      this.errors = { [key]: message };
      return false;
    } finally {
      this.busy = false;
      this.update();
    }
  }

  private _serverChanged(): void {
    this._changed();
  }

  private _estimate(): void {
    const cloud = this.cloud;
    if (!cloud?.available) {
      this.estimate.request(null);
      return;
    }
    this.estimate.request({
      server_id: this.original.id,
      config: changedConfig(this.values, this.original, cloud),
      hours_per_day: parseHoursPerDay(this.hoursPerDay) ?? 24
    });
  }

  private _errors(): EditErrors {
    const { error, field, pending } = this.estimate.state;
    if (error === null || field === null || pending) {
      return this.errors;
    }
    return { [editErrorKeyFor(field)]: error, ...this.errors };
  }

  protected render(): JSX.Element {
    return (
      <EditServerForm
        server={this.server}
        cloud={this.cloud}
        values={this.values}
        errors={this._errors()}
        disabled={this.busy}
        catalog={this.catalog}
        estimate={this.estimate.state}
        hoursPerDay={this.hoursPerDay}
        onHoursPerDay={text => {
          this.hoursPerDay = text;
          this._estimate();
          this.update();
        }}
        onChange={change => {
          const previous = this.values;
          this.values = change(previous);
          // An edited input's error is stale now: drop it.
          for (const key of Object.keys(this.values) as EditErrorKey[]) {
            const k = key as keyof IEditFormValues;
            if (this.values[k] !== previous[k]) {
              delete this.errors[key];
              if (key === 'gpu_type') {
                delete this.errors.gpu;
              }
            }
          }
          this._estimate();
          this.update();
        }}
      />
    );
  }
}

/**
 * A dialog that stays open until the server accepts the changes: its accept button sends
 * them, and a refusal (a 400, or a 409 when a change needs the server off) is shown by the
 * field at fault instead of closing it.
 */
export class EditServerDialog extends FormDialog<IServer | null> {
  constructor(form: EditServerBody) {
    super(form, {
      title: `Edit ${form.original.name}`,
      acceptLabel: 'Save',
      acceptClass: 'jp-ComputeServers-editSave',
      dialogClass: 'jp-ComputeServers-editDialog',
      focusNodeSelector: 'input[name="name"]'
    });
  }
}

/** Edit a compute server; resolves with it as saved, or null when cancelled. */
export async function openEditDialog(
  model: IComputeServersModel,
  server: IServer
): Promise<IServer | null> {
  // What the cloud offers now (its hosts' free GPUs, say); the last answer will do otherwise.
  await model.refreshClouds().catch(() => undefined);
  const dialog = new EditServerDialog(new EditServerBody(model, server));
  const result = await dialog.launch();
  return result.button.accept ? result.value : null;
}
