import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { ComputeServersSidebar } from './sidebar';
import { StatusModel } from './status';
import { IComputeServersStatus } from './tokens';

const PLUGIN_ID = 'jupyter-compute-servers:plugin';

/** Owns the connection to the server extension: everything else asks it for the status. */
const statusPlugin: JupyterFrontEndPlugin<IComputeServersStatus> = {
  id: 'jupyter-compute-servers:status',
  description: 'Tracks the compute servers server extension.',
  autoStart: true,
  provides: IComputeServersStatus,
  activate: (app: JupyterFrontEnd): IComputeServersStatus => {
    const model = new StatusModel(app.serviceManager.serverSettings);
    void model.refresh();
    return model;
  }
};

/** The left sidebar panel. */
const sidebarPlugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The Compute Servers panel in the left sidebar.',
  autoStart: true,
  requires: [IComputeServersStatus],
  optional: [ILayoutRestorer, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    status: IComputeServersStatus,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null
  ): void => {
    const sidebar = new ComputeServersSidebar(status);
    app.shell.add(sidebar, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(sidebar, sidebar.id);
    }
    if (settingRegistry) {
      settingRegistry.load(PLUGIN_ID).catch(reason => {
        console.error(
          'Failed to load settings for jupyter-compute-servers.',
          reason
        );
      });
    }
  }
};

export default [statusPlugin, sidebarPlugin];
export * from './tokens';
