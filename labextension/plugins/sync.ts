import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { requestAPI } from '../request';
import { NEW_SERVER, pickServer } from '../servers/pickServer';
import { DIRECTION_LABELS } from '../sync/format';
import { SyncLiveUpdates } from '../sync/live';
import { SyncModel, syncsEndPoint } from '../sync/model';
import { openSyncSettingsDialog } from '../sync/settingsDialog';
import { ISyncList, SyncDirection } from '../sync/types';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  IServer,
  IServerEvents,
  ISyncModel
} from '../tokens';
import { CommandIDs, PALETTE_CATEGORY } from './commands';
import { followSetting } from './servers';
import { SyncSection } from '../sync/section';

export namespace SyncCommandIDs {
  export const sync = 'compute-servers:sync';
  export const settings = 'compute-servers:sync-settings';
  export const openFile = 'compute-servers:open-synced-file';
}

/** The slow poll's interval for the running servers' syncs when the settings say nothing. */
const DEFAULT_REFRESH_SECONDS = 30;

function isDirection(value: unknown): value is SyncDirection {
  return value === 'both' || value === 'push' || value === 'pull';
}

/**
 * File sync between the Jupyter root and the compute servers: the syncs of each running
 * server (followed live), the commands to sync one (both ways, push, pull) and to edit its
 * sync settings, and opening a synced file (a conflict's two versions) in the Lab.
 */
export const syncPlugin: JupyterFrontEndPlugin<ISyncModel> = {
  id: 'jupyter-compute-servers:sync',
  description: 'File sync between the Jupyter root and the compute servers.',
  autoStart: true,
  provides: ISyncModel,
  requires: [IServerEvents, IComputeServersModel],
  optional: [ICommandPalette, ISettingRegistry, IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    events: IServerEvents,
    servers: IComputeServersModel,
    palette: ICommandPalette | null,
    settingRegistry: ISettingRegistry | null,
    sidebar: IComputeServersSidebar | null
  ): ISyncModel => {
    const serverSettings = app.serviceManager.serverSettings;
    const model = new SyncModel(serverSettings);
    const live = new SyncLiveUpdates({
      model,
      servers,
      events,
      interval: DEFAULT_REFRESH_SECONDS * 1000
    });
    followSetting(settingRegistry, 'refreshInterval', seconds => {
      if (typeof seconds === 'number' && seconds > 0) {
        live.interval = seconds * 1000;
      }
    });

    const serverOf = (args: Record<string, unknown>): IServer | undefined =>
      args['serverId'] === undefined
        ? undefined
        : servers.server(Number(args['serverId']));

    /** The server to sync: the one named, else the only one running, else asked for. */
    const chooseRunning = async (
      args: Record<string, unknown>
    ): Promise<IServer | null> => {
      const named = serverOf(args);
      if (named) {
        return named;
      }
      const running = servers.servers.filter(s => s.state === 'running');
      if (running.length === 1) {
        return running[0];
      }
      if (running.length === 0) {
        await showErrorMessage(
          'No compute server is running',
          'Start a compute server in the Compute Servers panel, then sync it.'
        );
        return null;
      }
      const chosen = await pickServer(running, {
        title: 'Sync files with a compute server',
        purpose: 'to sync the Jupyter root with',
        accept: 'Sync'
      });
      if (chosen === NEW_SERVER) {
        void app.commands.execute(CommandIDs.create);
        return null;
      }
      return chosen === null ? null : (servers.server(chosen) ?? null);
    };

    app.commands.addCommand(SyncCommandIDs.sync, {
      label: args => {
        const direction = isDirection(args['direction'])
          ? args['direction']
          : 'both';
        const server = serverOf(args);
        if (args['isPalette'] || !server) {
          return direction === 'both'
            ? 'Sync Files with Compute Server…'
            : `${DIRECTION_LABELS[direction]}…`;
        }
        return `${DIRECTION_LABELS[direction]}: ${server.name}`;
      },
      caption:
        "Sync the Jupyter root and a compute server's workspace (both ways, push or pull)",
      isEnabled: args => {
        const server = serverOf(args);
        return server === undefined
          ? args['serverId'] === undefined
          : server.state === 'running';
      },
      execute: async args => {
        const server = await chooseRunning(args);
        if (!server) {
          return null;
        }
        const direction = isDirection(args['direction'])
          ? args['direction']
          : 'both';
        const path = typeof args['path'] === 'string' ? args['path'] : '';
        try {
          return await model.start(server.id, { direction, path });
        } catch (error) {
          // The sidebar shows why under the server; say it here too for the palette.
          if (args['isPalette']) {
            await showErrorMessage(
              `Could not sync ${server.name}`,
              model.actionError(server.id) ?? String(error)
            );
          }
          return null;
        }
      }
    });

    app.commands.addCommand(SyncCommandIDs.settings, {
      label: args => {
        const server = serverOf(args);
        return server ? `Sync Settings of ${server.name}…` : 'Sync Settings…';
      },
      caption:
        'What a compute server syncs and when: auto-sync, before kernel starts, excludes, server-only directories, largest file',
      isEnabled: args => serverOf(args) !== undefined,
      execute: args => {
        const server = serverOf(args);
        if (!server) {
          return null;
        }
        const known = model.entry(server.id).value.defaultExcludes;
        return openSyncSettingsDialog(servers, server, async () =>
          known.length > 0
            ? known
            : (
                await requestAPI<ISyncList>(
                  syncsEndPoint(server.id),
                  {},
                  serverSettings
                )
              ).default_excludes
        );
      }
    });

    app.commands.addCommand(SyncCommandIDs.openFile, {
      label: args => `Open ${String(args['path'] ?? 'File')}`,
      caption: 'Open a file of the Jupyter root',
      execute: args =>
        app.commands.execute('docmanager:open', { path: String(args['path']) })
    });

    if (palette) {
      palette.addItem({
        command: SyncCommandIDs.sync,
        category: PALETTE_CATEGORY,
        args: { isPalette: true }
      });
    }
    sidebar?.addSection(
      new SyncSection({
        sync: model,
        onSync: (server, direction) =>
          void app.commands.execute(SyncCommandIDs.sync, {
            serverId: server.id,
            direction
          }),
        onSyncSettings: server =>
          void app.commands.execute(SyncCommandIDs.settings, {
            serverId: server.id
          }),
        onOpenFile: path =>
          void app.commands.execute(SyncCommandIDs.openFile, { path })
      })
    );
    return model;
  }
};
