import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { deleteHost, openHostDialog } from '../hosts/form';
import { runServerAction } from '../servers/actions';
import { ComputeServersSidebar } from '../sidebar';
import { TerminalCommandIDs } from '../terminals/commands';
import {
  ICostsModel,
  IComputeServersModel,
  IComputeServersStatus,
  IHostsModel,
  IServerKernelsModel,
  IServerMetricsModel,
  IServerTerminalsModel,
  ISyncModel
} from '../tokens';
import { CommandIDs } from './commands';
import { SyncCommandIDs } from './sync';
import { SETTINGS_PLUGIN_ID } from './servers';

/** The Compute Servers panel in the left sidebar (its settings: schema/plugin.json). */
export const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: SETTINGS_PLUGIN_ID,
  description: 'The Compute Servers panel in the left sidebar.',
  autoStart: true,
  requires: [IComputeServersStatus, IComputeServersModel],
  optional: [
    ILayoutRestorer,
    IServerKernelsModel,
    IServerTerminalsModel,
    IServerMetricsModel,
    IHostsModel,
    ISyncModel,
    ICostsModel
  ],
  activate: (
    app: JupyterFrontEnd,
    status: IComputeServersStatus,
    model: IComputeServersModel,
    restorer: ILayoutRestorer | null,
    kernels: IServerKernelsModel | null,
    terminals: IServerTerminalsModel | null,
    metrics: IServerMetricsModel | null,
    hosts: IHostsModel | null,
    sync: ISyncModel | null,
    costs: ICostsModel | null
  ): void => {
    const { commands } = app;
    const sessions = app.serviceManager.sessions;
    // The terminal and SSH access commands come with the terminals plugin.
    const hasTerminals = terminals !== null;
    const sidebar = new ComputeServersSidebar({
      status,
      model,
      kernels,
      terminals,
      metrics,
      hosts,
      sync,
      costs,
      sessionPath: kernelId => {
        for (const session of sessions.running()) {
          if (session.kernel?.id === kernelId) {
            return session.path;
          }
        }
        return null;
      },
      onCreate: () => void commands.execute(CommandIDs.create),
      onAction: (server, action) => runServerAction(model, server, action),
      onNewTerminal: hasTerminals
        ? server =>
            void commands.execute(TerminalCommandIDs.newTerminal, {
              serverId: server.id
            })
        : undefined,
      onOpenTerminal: (server, name) =>
        void commands
          .execute(TerminalCommandIDs.openTerminal, {
            serverId: server.id,
            name
          })
          .catch(reason => {
            console.warn(`Could not open terminal ${name}.`, reason);
            void terminals?.refresh(server.id);
          }),
      onSSHAccess: hasTerminals
        ? server =>
            void commands.execute(TerminalCommandIDs.sshAccess, {
              serverId: server.id
            })
        : undefined,
      onEdit: server =>
        void commands.execute(CommandIDs.edit, { serverId: server.id }),
      onSync: sync
        ? (server, direction) =>
            void commands.execute(SyncCommandIDs.sync, {
              serverId: server.id,
              direction
            })
        : undefined,
      onSyncSettings: sync
        ? server =>
            void commands.execute(SyncCommandIDs.settings, {
              serverId: server.id
            })
        : undefined,
      onOpenFile: path =>
        void commands.execute(SyncCommandIDs.openFile, { path }),
      onAddHost: hosts ? () => void openHostDialog(hosts) : undefined,
      onEditHost: hosts ? host => void openHostDialog(hosts, host) : undefined,
      onDeleteHost: hosts ? host => deleteHost(hosts, host) : undefined
    });
    app.shell.add(sidebar, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }
  }
};
