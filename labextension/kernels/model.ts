import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from '../request';
import { ServerDetailsStore } from '../servers/details';
import { IServerKernelsModel } from '../tokens';
import { IRemoteKernel } from './types';

/**
 * The kernels running on each compute server, read from `servers/{id}/kernels`, for the servers
 * asked for. Live updates (events, the servers' states, a poll) call `refresh` from outside
 * (see `live.ts`).
 */
export class ServerKernelsModel
  extends ServerDetailsStore<ReadonlyArray<IRemoteKernel>>
  implements IServerKernelsModel
{
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    super(
      async serverId =>
        sortKernels(
          (
            await requestAPI<{ kernels: IRemoteKernel[] }>(
              `servers/${serverId}/kernels`,
              {},
              serverSettings
            )
          ).kernels
        ),
      []
    );
  }

  /** Shut a kernel down (its sessions end too), then re-read the server's kernels. */
  async shutdown(serverId: number, kernelId: string): Promise<void> {
    try {
      await requestAPI(
        `servers/${serverId}/kernels/${encodeURIComponent(kernelId)}`,
        { method: 'DELETE' },
        this.serverSettings
      );
    } catch (error) {
      void this.refresh(serverId);
      throw error;
    }
    const entry = this.entry(serverId);
    if (entry.value.some(k => k.kernel_id === kernelId)) {
      // Gone now, whatever a refresh already on its way says.
      this.nextTicket(serverId);
      this.set(serverId, {
        ...entry,
        value: entry.value.filter(k => k.kernel_id !== kernelId)
      });
    }
    void this.refresh(serverId);
  }
}

/** Orphans first (they may hold GPUs for nobody), then oldest first. */
function sortKernels(kernels: IRemoteKernel[]): IRemoteKernel[] {
  return [...kernels].sort(
    (a, b) =>
      Number(a.attached) - Number(b.attached) ||
      (a.started ?? 0) - (b.started ?? 0)
  );
}
