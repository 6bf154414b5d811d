import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ILauncher } from '@jupyterlab/launcher';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import {
  addLauncherCommands,
  ServerLauncherSections
} from '../kernels/launcher';
import { groupKernelPickerByServer } from '../kernels/picker';
import { KernelSpecsSync } from '../kernels/specs';
import { SETTINGS_PLUGIN_ID } from './servers';

/** Call `apply` with a setting of the panel's settings now and whenever it changes. */
function followSetting(
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

/** Kernel specs follow the compute servers (created, renamed, deleted) without a reload. */
export const kernelSpecsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:kernel-specs',
  description:
    "Refreshes the kernel specs when compute servers' kernels change.",
  autoStart: true,
  activate: (app: JupyterFrontEnd): void => {
    new KernelSpecsSync({
      specs: app.serviceManager.kernelspecs,
      events: app.serviceManager.events
    });
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
