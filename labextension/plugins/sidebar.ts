import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { runServerAction } from '../servers/actions';
import { ComputeServersSidebar } from '../sidebar';
import {
  IComputeServersModel,
  IComputeServersStatus,
  IServerKernelsModel
} from '../tokens';
import { CommandIDs } from './commands';
import { SETTINGS_PLUGIN_ID } from './servers';

/** The Compute Servers panel in the left sidebar (its settings: schema/plugin.json). */
export const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: SETTINGS_PLUGIN_ID,
  description: 'The Compute Servers panel in the left sidebar.',
  autoStart: true,
  requires: [IComputeServersStatus, IComputeServersModel],
  optional: [ILayoutRestorer, IServerKernelsModel],
  activate: (
    app: JupyterFrontEnd,
    status: IComputeServersStatus,
    model: IComputeServersModel,
    restorer: ILayoutRestorer | null,
    kernels: IServerKernelsModel | null
  ): void => {
    const sessions = app.serviceManager.sessions;
    const sidebar = new ComputeServersSidebar({
      status,
      model,
      kernels,
      sessionPath: kernelId => {
        for (const session of sessions.running()) {
          if (session.kernel?.id === kernelId) {
            return session.path;
          }
        }
        return null;
      },
      onCreate: () => void app.commands.execute(CommandIDs.create),
      onAction: (server, action) => runServerAction(model, server, action)
    });
    app.shell.add(sidebar, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }
  }
};
