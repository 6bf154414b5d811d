import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { deleteHost, openHostDialog } from '../hosts/form';
import { HostsModel } from '../hosts/model';
import { MetricsLiveUpdates } from '../metrics/live';
import { ServerMetricsModel } from '../metrics/model';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  IHostsModel,
  IServerMetricsModel
} from '../tokens';
import { PALETTE_CATEGORY } from './commands';
import { followSetting } from './servers';
import { MetricsSection } from '../metrics/section';
import { HostsSidebarSection } from '../hosts/section';

export namespace HostCommandIDs {
  export const add = 'compute-servers:add-host';
  export const refresh = 'compute-servers:refresh-hosts';
}

/** The seconds between metrics samples when the settings cannot be read. */
export const DEFAULT_METRICS_SECONDS = 5;

/** The on-prem hosts of the ssh cloud (the sidebar's Hosts section), with add and refresh. */
export const hostsPlugin: JupyterFrontEndPlugin<IHostsModel> = {
  id: 'jupyter-compute-servers:hosts',
  description: 'The on-prem hosts of the ssh cloud.',
  autoStart: true,
  provides: IHostsModel,
  requires: [IComputeServersModel],
  optional: [ICommandPalette, IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    servers: IComputeServersModel,
    palette: ICommandPalette | null,
    sidebar: IComputeServersSidebar | null
  ): IHostsModel => {
    const sshEnabled = () => servers.clouds.some(c => c.name === 'ssh');
    // What the ssh cloud offers (and whether it can be used) follows its hosts.
    const hosts = new HostsModel(
      app.serviceManager.serverSettings,
      () => {
        void servers.refreshClouds().catch(reason => {
          console.warn('Could not read the compute servers clouds.', reason);
        });
      },
      sshEnabled
    );
    // The clouds may come after the sidebar shows: read the hosts once they say ssh is on.
    servers.changed.connect(() => {
      if (hosts.watched && sshEnabled() && !hosts.loaded && !hosts.error) {
        void hosts.refresh();
      }
    });
    app.commands.addCommand(HostCommandIDs.add, {
      label: args => (args['isPalette'] ? 'Add On-Prem Host…' : 'Add host…'),
      caption:
        'Register a machine you reach with ssh, to create compute servers on it (the ssh cloud)',
      execute: () => openHostDialog(hosts)
    });
    app.commands.addCommand(HostCommandIDs.refresh, {
      label: 'Refresh On-Prem Hosts',
      caption: 'Re-read the hosts of the ssh cloud now',
      execute: () => hosts.refresh()
    });
    if (palette) {
      for (const command of [HostCommandIDs.add, HostCommandIDs.refresh]) {
        palette.addItem({
          command,
          category: PALETTE_CATEGORY,
          args: { isPalette: true }
        });
      }
    }
    sidebar?.addSection(
      new HostsSidebarSection({
        hosts,
        onAddHost: () => void openHostDialog(hosts),
        onEditHost: host => void openHostDialog(hosts, host),
        onDeleteHost: host => deleteHost(hosts, host)
      })
    );
    return hosts;
  }
};

/**
 * GPU, CPU and memory use of the running compute servers, sampled every few seconds
 * (`metricsInterval`) while the sidebar shows them, and not at all while it does not.
 */
export const metricsPlugin: JupyterFrontEndPlugin<IServerMetricsModel> = {
  id: 'jupyter-compute-servers:metrics',
  description: 'GPU, CPU and memory use of the running compute servers.',
  autoStart: true,
  provides: IServerMetricsModel,
  requires: [IComputeServersModel],
  optional: [ISettingRegistry, IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    servers: IComputeServersModel,
    settingRegistry: ISettingRegistry | null,
    sidebar: IComputeServersSidebar | null
  ): IServerMetricsModel => {
    const metrics = new ServerMetricsModel(app.serviceManager.serverSettings);
    const live = new MetricsLiveUpdates({
      metrics,
      servers,
      interval: DEFAULT_METRICS_SECONDS * 1000
    });
    followSetting(settingRegistry, 'metricsInterval', seconds => {
      live.interval =
        (typeof seconds === 'number' && seconds > 0
          ? seconds
          : DEFAULT_METRICS_SECONDS) * 1000;
    });
    sidebar?.addSection(new MetricsSection(metrics));
    return metrics;
  }
};
