import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISessionContext, IToolbarWidgetRegistry } from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { Widget } from '@lumino/widgets';

import { ComputeServerIndicator } from '../kernels/indicator';
import {
  addLauncherCommands,
  ServerLauncherSections
} from '../kernels/launcher';
import { KernelsLiveUpdates } from '../kernels/live';
import { ServerKernelsModel } from '../kernels/model';
import { groupKernelPickerByServer } from '../kernels/picker';
import { KernelSpecsSync } from '../kernels/specs';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  IServerEvents,
  IServerKernelsModel
} from '../tokens';
import { followSetting } from './servers';
import { KernelsSection } from '../kernels/section';

/** The name of the notebook toolbar item (schema/plugin.json places it). */
export const INDICATOR_TOOLBAR_ITEM = 'computeServer';

/** Kernel specs follow the compute servers (created, renamed, deleted) without a reload. */
export const kernelSpecsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:kernel-specs',
  description:
    "Refreshes the kernel specs when compute servers' kernels change.",
  autoStart: true,
  requires: [IServerEvents],
  activate: (app: JupyterFrontEnd, events: IServerEvents): void => {
    new KernelSpecsSync({
      specs: app.serviceManager.kernelspecs,
      events
    });
  }
};

/** The kernels running on each compute server, for the sidebar. */
export const kernelsPlugin: JupyterFrontEndPlugin<IServerKernelsModel> = {
  id: 'jupyter-compute-servers:kernels',
  description: 'The kernels running on the compute servers, kept up to date.',
  autoStart: true,
  provides: IServerKernelsModel,
  requires: [IServerEvents, IComputeServersModel],
  optional: [ISettingRegistry, IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    events: IServerEvents,
    servers: IComputeServersModel,
    settingRegistry: ISettingRegistry | null,
    sidebar: IComputeServersSidebar | null
  ): IServerKernelsModel => {
    const kernels = new ServerKernelsModel(app.serviceManager.serverSettings);
    const live = new KernelsLiveUpdates({
      kernels,
      servers,
      events,
      interval: 30 * 1000
    });
    followSetting(settingRegistry, 'refreshInterval', seconds => {
      if (typeof seconds === 'number' && seconds > 0) {
        live.interval = seconds * 1000;
      }
    });
    const sessions = app.serviceManager.sessions;
    sidebar?.addSection(
      new KernelsSection({
        kernels,
        sessionPath: kernelId => {
          for (const session of sessions.running()) {
            if (session.kernel?.id === kernelId) {
              return session.path;
            }
          }
          return null;
        }
      })
    );
    return kernels;
  }
};

/** A launcher section per compute server, with its kernels' notebooks and consoles. */
export const launcherPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:launcher',
  description: "Groups the compute servers' kernels by server in the launcher.",
  autoStart: true,
  requires: [ILauncher],
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    launcher: ILauncher,
    settingRegistry: ISettingRegistry | null
  ): void => {
    const specs = app.serviceManager.kernelspecs;
    addLauncherCommands(app.commands, specs);
    const sections = new ServerLauncherSections({
      launcher,
      specs,
      commands: app.commands
    });
    followSetting(settingRegistry, 'groupKernelsByServer', value => {
      sections.enabled = value !== false;
    });
  }
};

/** The kernel picker ("Select Kernel") groups the compute servers' kernels by server. */
export const kernelPickerPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:kernel-picker',
  description:
    "Groups the compute servers' kernels by server in the kernel picker.",
  autoStart: true,
  optional: [ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    settingRegistry: ISettingRegistry | null
  ): void => {
    let grouping = groupKernelPickerByServer();
    followSetting(settingRegistry, 'groupKernelsByServer', value => {
      const wanted = value !== false;
      if (wanted && grouping.isDisposed) {
        grouping = groupKernelPickerByServer();
      } else if (!wanted) {
        grouping.dispose();
      }
    });
  }
};

/** The notebook toolbar says which compute server runs the kernel. */
export const kernelIndicatorPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:kernel-indicator',
  description:
    'A notebook toolbar item naming the compute server that runs the kernel.',
  autoStart: true,
  requires: [IToolbarWidgetRegistry],
  optional: [IComputeServersModel],
  activate: (
    app: JupyterFrontEnd,
    toolbarRegistry: IToolbarWidgetRegistry,
    servers: IComputeServersModel | null
  ): void => {
    toolbarRegistry.addFactory<Widget & { sessionContext?: ISessionContext }>(
      'Notebook',
      INDICATOR_TOOLBAR_ITEM,
      panel => {
        if (!panel.sessionContext) {
          const empty = new Widget();
          empty.hide();
          return empty;
        }
        return new ComputeServerIndicator({
          sessionContext: panel.sessionContext,
          model: servers
        });
      }
    );
  }
};
