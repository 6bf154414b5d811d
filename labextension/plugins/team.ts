import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';

import { TeamSidebarSection } from '../team/section';
import { TeamModel } from '../team/model';
import { IComputeServersModel, IComputeServersSidebar } from '../tokens';

/**
 * Team mode (JupyterHub) in the panel: the user's quota and places in the GPU queues; for
 * admins, everyone's servers by owner, the queues with move-to-front and cancel, and spend per
 * user this month with its CSV. Standalone it shows nothing.
 */
export const teamPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:team',
  description: "Team mode's quota, GPU queue and admin view in the panel.",
  autoStart: true,
  requires: [IComputeServersModel],
  optional: [IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    servers: IComputeServersModel,
    sidebar: IComputeServersSidebar | null
  ): void => {
    if (!sidebar) {
      return;
    }
    const team = new TeamModel(app.serviceManager.serverSettings);
    // Queues move as servers start and stop: read again after the servers' events.
    servers.changed.connect(() => team.scheduleRefresh());
    sidebar.addSection(new TeamSidebarSection(team));
  }
};
