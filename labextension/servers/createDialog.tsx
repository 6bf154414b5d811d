import { showErrorMessage } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ImageCatalogState } from '../create/catalogState';
import { EstimateTracker, parseHoursPerDay } from '../create/estimate';
import { ApiError } from '../request';
import { IComputeServersModel } from '../tokens';
import {
  buildConfig,
  buildCreateRequest,
  CreateServerForm,
  errorKeyFor,
  FormErrorKey,
  FormErrors,
  ICreateFormValues,
  initialValues
} from './createForm';
import { IServer, ITeam } from './types';
import { FormDialog } from '../formDialog';

/** The create dialog's body: holds what was typed, and the server's complaints about it. */
export class CreateServerBody extends ReactWidget {
  constructor(
    private readonly model: IComputeServersModel,
    options: { estimateDelay?: number } = {}
  ) {
    super();
    this.addClass('jp-ComputeServers-createBody');
    this.values = initialValues(model.clouds, model.servers.length);
    this.catalog = new ImageCatalogState({
      fetch: includeUntested => model.images(includeUntested),
      changed: () => this._catalogChanged(),
      mark: (image, tag) => model.markImageTested(image, tag)
    });
    this.estimate = new EstimateTracker({
      fetch: body => model.estimate(body),
      delay: options.estimateDelay,
      changed: () => this._changed()
    });
    void this.catalog.load();
    this._estimate();
    // The quota is a hint shown before a create: without it the form works the same.
    void model.team().then(
      team => {
        this.team = team;
        // (admins may mark the chosen untested version tested, for every user)
        this.catalog.canMark = team.user.admin;
        this._changed();
      },
      () => undefined
    );
  }

  /** Team mode's quota and use, once read. */
  team: ITeam | null = null;

  values: ICreateFormValues;
  errors: FormErrors = {};
  busy = false;
  /** The server once created: the dialog's value. */
  created: IServer | null = null;
  /** The image catalogue the picker shows. */
  readonly catalog: ImageCatalogState;
  /** The live cost estimate of the options chosen. */
  readonly estimate: EstimateTracker;
  /** Hours running per day for the estimate's projection, as typed. */
  hoursPerDay = '24';

  /** Re-render, unless closed (an answer may arrive after the dialog is gone). */
  private _changed(): void {
    if (!this.isDisposed) {
      this.update();
    }
  }

  getValue(): IServer | null {
    return this.created;
  }

  dispose(): void {
    this.estimate.dispose();
    super.dispose();
  }

  /** Ask for the estimate of the options as they are now (debounced). */
  private _estimate(): void {
    const cloud = this.model.clouds.find(c => c.name === this.values.cloud);
    if (!cloud?.available) {
      this.estimate.request(null);
      return;
    }
    this.estimate.request({
      cloud: cloud.name,
      config: buildConfig(this.values, cloud),
      hours_per_day: parseHoursPerDay(this.hoursPerDay) ?? 24
    });
  }

  /**
   * The catalogue changed (read, or the Advanced switch flipped): a version chosen that is no
   * longer shown (untested, with the switch off) becomes the image's first one shown.
   */
  private _catalogChanged(): void {
    if (this.isDisposed) {
      return;
    }
    const image = this.catalog.images?.find(i => i.id === this.values.image);
    if (
      image &&
      image.versions.length > 0 &&
      !image.versions.some(v => v.tag === this.values.image_tag)
    ) {
      this.values = { ...this.values, image_tag: image.versions[0].tag };
      this._estimate();
    }
    this.update();
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

  /** The server's errors about the form: from creating, else from the live estimate. */
  private _errors(): FormErrors {
    // An estimate still on its way may say otherwise: only a settled one's error shows.
    const { error, field, pending } = this.estimate.state;
    if (error === null || field === null || pending) {
      return this.errors;
    }
    return { [errorKeyFor(field)]: error, ...this.errors };
  }

  protected render(): JSX.Element {
    return (
      <CreateServerForm
        clouds={this.model.clouds}
        values={this.values}
        errors={this._errors()}
        disabled={this.busy}
        catalog={this.catalog}
        estimate={this.estimate.state}
        team={this.team}
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
          this._estimate();
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
export class CreateServerDialog extends FormDialog<IServer | null> {
  constructor(form: CreateServerBody) {
    super(form, {
      title: 'New compute server',
      acceptLabel: 'Create',
      acceptClass: 'jp-ComputeServers-createButton',
      dialogClass: 'jp-ComputeServers-createDialog',
      focusNodeSelector: 'input[name="name"]'
    });
  }
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
