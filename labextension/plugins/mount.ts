import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { showErrorMessage } from '@jupyterlab/apputils';

import { MountSection } from '../mount/section';
import { requestAPI } from '../request';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  IServer
} from '../tokens';

/**
 * The live workspace: a Mount/Unmount button on each running server's row and the mount's
 * state under it. The list follows `mount` events, so the state shows without a reload.
 */
export const mountPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:mount',
  description: 'Mount the Jupyter root on a compute server.',
  autoStart: true,
  requires: [IComputeServersModel],
  optional: [IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    servers: IComputeServersModel,
    sidebar: IComputeServersSidebar | null
  ): void => {
    const settings = app.serviceManager.serverSettings;
    const busy = new Set<number>();
    const run = async (
      server: IServer,
      method: 'POST' | 'DELETE',
      doing: string
    ): Promise<void> => {
      busy.add(server.id);
      void servers.refresh();
      try {
        await requestAPI(
          `servers/${server.id}/mount`,
          method === 'POST' ? { method, body: {} } : { method },
          settings
        );
      } catch (reason) {
        await showErrorMessage(
          `Could not ${doing} on ${server.name}`,
          reason instanceof Error ? reason.message : String(reason)
        );
      } finally {
        busy.delete(server.id);
        void servers.refresh();
      }
    };
    sidebar?.addSection(
      new MountSection({
        onMount: server => void run(server, 'POST', 'mount the Jupyter root'),
        onUnmount: server =>
          void run(server, 'DELETE', 'unmount the Jupyter root'),
        busy: id => busy.has(id)
      })
    );
  }
};
