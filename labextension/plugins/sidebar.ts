import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { runServerAction } from '../servers/actions';
import { ComputeServersSidebar } from '../sidebar';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  IComputeServersStatus
} from '../tokens';
import { CommandIDs } from './commands';
import { SETTINGS_PLUGIN_ID } from './servers';

/**
 * The Compute Servers panel in the left sidebar (its settings: schema/plugin.json): the
 * servers with their lifecycle buttons; the other plugins add their sections to it.
 */
export const sidebarPlugin: JupyterFrontEndPlugin<IComputeServersSidebar> = {
  id: SETTINGS_PLUGIN_ID,
  description: 'The Compute Servers panel in the left sidebar.',
  autoStart: true,
  provides: IComputeServersSidebar,
  requires: [IComputeServersStatus, IComputeServersModel],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    status: IComputeServersStatus,
    model: IComputeServersModel,
    restorer: ILayoutRestorer | null
  ): IComputeServersSidebar => {
    const { commands } = app;
    const sidebar = new ComputeServersSidebar({
      status,
      model,
      onCreate: () => void commands.execute(CommandIDs.create),
      onAction: (server, action) => runServerAction(model, server, action)
    });
    app.shell.add(sidebar, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }
    return sidebar;
  }
};
