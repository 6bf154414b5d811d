import { Dialog, showErrorMessage } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError } from '../request';
import { IComputeServersModel } from '../tokens';
import {
  buildCreateRequest,
  CreateServerForm,
  errorKeyFor,
  FormErrorKey,
  FormErrors,
  ICreateFormValues,
  initialValues
} from './createForm';
import { IServer } from './types';

/** The create dialog's body: holds what was typed, and the server's complaints about it. */
export class CreateServerBody extends ReactWidget {
  constructor(private readonly model: IComputeServersModel) {
    super();
    this.addClass('jp-ComputeServers-createBody');
    this.values = initialValues(model.clouds, model.servers.length);
  }

  values: ICreateFormValues;
  errors: FormErrors = {};
  busy = false;
  /** The server once created: the dialog's value. */
  created: IServer | null = null;

  getValue(): IServer | null {
    return this.created;
  }

  /** Send the form; on a refusal, show why next to the input at fault and answer false. */
  async submit(): Promise<boolean> {
    if (this.busy) {
      return false;
    }
    const cloud = this.model.clouds.find(c => c.name === this.values.cloud);
    this.busy = true;
    this.errors = {};
    this.update();
    try {
      this.created = await this.model.create(
        buildCreateRequest(this.values, cloud)
      );
      return true;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      const key =
        error instanceof ApiError ? errorKeyFor(error.field) : 'general';
      this.errors = { [key]: message };
      return false;
    } finally {
      this.busy = false;
      this.update();
    }
  }

  protected render(): JSX.Element {
    return (
      <CreateServerForm
        clouds={this.model.clouds}
        values={this.values}
        errors={this.errors}
        disabled={this.busy}
        onChange={change => {
          const previous = this.values;
          this.values = change(previous);
          // An edited input's error is stale now: drop it.
          for (const key of Object.keys(this.values) as FormErrorKey[]) {
            if (
              this.values[key as keyof ICreateFormValues] !==
              previous[key as keyof ICreateFormValues]
            ) {
              delete this.errors[key];
              if (key === 'gpu_type') {
                delete this.errors.gpu;
              }
            }
          }
          this.update();
        }}
      />
    );
  }
}

/**
 * A dialog that stays open until the server accepts the new server: its accept button sends
 * the form, and a refusal is shown in the form instead of closing it.
 */
export class CreateServerDialog extends Dialog<IServer | null> {
  constructor(private readonly form: CreateServerBody) {
    const buttons = [
      Dialog.cancelButton(),
      Dialog.okButton({
        label: 'Create',
        className: 'jp-ComputeServers-createButton'
      })
    ];
    super({
      title: 'New compute server',
      body: form,
      buttons,
      defaultButton: buttons.length - 1,
      focusNodeSelector: 'input[name="name"]'
    });
    this._buttonList = buttons;
    this.addClass('jp-ComputeServers-createDialog');
  }

  resolve(index?: number): void {
    const button = this._buttonList[index ?? this._buttonList.length - 1];
    if (!button || !button.accept || this._accepted) {
      super.resolve(index);
      return;
    }
    void this.form.submit().then(ok => {
      if (ok && !this.isDisposed) {
        this._accepted = true;
        super.resolve(index);
      }
    });
  }

  private _buttonList: ReadonlyArray<Dialog.IButton>;
  private _accepted = false;
}

/** Ask for a new compute server; resolves with it, or null when cancelled. */
export async function openCreateDialog(
  model: IComputeServersModel
): Promise<IServer | null> {
  try {
    await model.refreshClouds();
  } catch (error) {
    if (model.clouds.length === 0) {
      await showErrorMessage(
        'Cannot create a compute server',
        `Could not read the enabled clouds: ${
          error instanceof Error ? error.message : String(error)
        }. Check that the Jupyter server is running and the compute servers extension is enabled.`
      );
      return null;
    }
  }
  if (model.clouds.length === 0) {
    await showErrorMessage(
      'Cannot create a compute server',
      'No cloud is enabled. Enable one with ComputeServersApp.enabled_clouds in jupyter_server_config.py and restart Jupyter.'
    );
    return null;
  }
  const dialog = new CreateServerDialog(new CreateServerBody(model));
  const result = await dialog.launch();
  return result.button.accept ? result.value : null;
}
