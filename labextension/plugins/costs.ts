import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { CostsLiveUpdates, CostsModel } from '../costs/model';
import { ServerNotifier } from '../notifications';
import { runServerAction } from '../servers/actions';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  ICostsModel,
  IServerEvents
} from '../tokens';
import { CommandIDs } from './commands';
import { followSetting } from './servers';
import { CostsSection } from '../costs/section';

/** The sidebar's id (see sidebar.tsx). */
const SIDEBAR_ID = 'jp-compute-servers-sidebar';

/** The costs poll's interval when the settings say nothing, in seconds. */
const DEFAULT_REFRESH_SECONDS = 30;

/**
 * The spend of all compute servers and the monthly budget, read while the sidebar shows
 * them: again after the events that change them, and every `refreshInterval` seconds.
 */
export const costsPlugin: JupyterFrontEndPlugin<ICostsModel> = {
  id: 'jupyter-compute-servers:costs',
  description: 'The spend of all compute servers and the monthly budget.',
  autoStart: true,
  provides: ICostsModel,
  requires: [IServerEvents],
  optional: [ISettingRegistry, IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    events: IServerEvents,
    settingRegistry: ISettingRegistry | null,
    sidebar: IComputeServersSidebar | null
  ): ICostsModel => {
    const model = new CostsModel(app.serviceManager.serverSettings);
    const live = new CostsLiveUpdates({
      model,
      events,
      interval: DEFAULT_REFRESH_SECONDS * 1000
    });
    followSetting(settingRegistry, 'refreshInterval', seconds => {
      if (typeof seconds === 'number' && seconds > 0) {
        live.interval = seconds * 1000;
      }
    });
    sidebar?.addSection(new CostsSection(model));
    return model;
  }
};

/**
 * Notifications for what happens to compute servers on its own: cost warnings, automatic
 * stops and preemptions, each once, with "Open panel" and, where it makes sense, "Start
 * again" or "Edit limit".
 */
export const notificationsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:notifications',
  description:
    'Notifications for cost warnings, automatic stops and preemptions of compute servers.',
  autoStart: true,
  requires: [IServerEvents, IComputeServersModel],
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    events: IServerEvents,
    servers: IComputeServersModel,
    settingRegistry: ISettingRegistry | null
  ): void => {
    const notifier = new ServerNotifier({
      servers,
      events,
      actions: {
        openPanel: () => app.shell.activateById(SIDEBAR_ID),
        // The list first: the server may not be off in it yet.
        start: serverId =>
          void servers.refresh().then(() => {
            const server = servers.server(serverId);
            if (server) {
              return runServerAction(
                servers,
                server,
                server.allowed_actions.includes('resume') ? 'resume' : 'start'
              );
            }
          }),
        edit: serverId =>
          void app.commands.execute(CommandIDs.edit, { serverId })
      }
    });
    followSetting(settingRegistry, 'notifications', value => {
      notifier.enabled = value !== false;
    });
  }
};
