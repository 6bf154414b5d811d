import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { LiveUpdates } from '../servers/live';
import { ServersModel } from '../servers/model';
import { IComputeServersModel, IServerEvents } from '../tokens';

/** The plugin whose settings (schema/plugin.json) hold the refresh interval. */
export const SETTINGS_PLUGIN_ID = 'jupyter-compute-servers:plugin';

/** The fallback poll's interval when the settings cannot be read, in seconds. */
const DEFAULT_REFRESH_SECONDS = 30;

/** Call `apply` with a setting of the panel's settings now and whenever it changes. */
export function followSetting(
  settingRegistry: ISettingRegistry | null,
  key: string,
  apply: (value: unknown) => void
): void {
  if (!settingRegistry) {
    return;
  }
  settingRegistry
    .load(SETTINGS_PLUGIN_ID)
    .then(settings => {
      const update = () => apply(settings.get(key).composite);
      update();
      settings.changed.connect(update);
    })
    .catch(reason => {
      console.error(
        `Failed to load the setting ${key} of jupyter-compute-servers.`,
        reason
      );
    });
}

/** The compute servers list, kept up to date by events and a poll. */
export const serversPlugin: JupyterFrontEndPlugin<IComputeServersModel> = {
  id: 'jupyter-compute-servers:servers',
  description: 'The compute servers and clouds, kept up to date.',
  autoStart: true,
  provides: IComputeServersModel,
  requires: [IServerEvents],
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    events: IServerEvents,
    settingRegistry: ISettingRegistry | null
  ): IComputeServersModel => {
    const model = new ServersModel(app.serviceManager.serverSettings);
    const live = new LiveUpdates({
      model,
      events,
      interval: DEFAULT_REFRESH_SECONDS * 1000
    });
    void model.refreshClouds().catch(reason => {
      console.warn('Could not read the compute servers clouds.', reason);
    });
    if (settingRegistry) {
      settingRegistry
        .load(SETTINGS_PLUGIN_ID)
        .then(settings => {
          const apply = () => {
            const seconds = settings.get('refreshInterval').composite;
            live.interval =
              (typeof seconds === 'number' && seconds > 0
                ? seconds
                : DEFAULT_REFRESH_SECONDS) * 1000;
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.error(
            'Failed to load settings for jupyter-compute-servers.',
            reason
          );
        });
    }
    return model;
  }
};
