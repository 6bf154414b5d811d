import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from '../request';
import { ServerDetailsStore } from '../servers/details';
import { IServerMetricsModel } from '../tokens';
import { IServerMetrics } from './types';

/**
 * The last metrics sample of each running compute server (`servers/{id}/metrics`), read for
 * the servers asked for. `MetricsLiveUpdates` (a `ServerDetailsLiveUpdates`) reads them every
 * few seconds while the sidebar shows them.
 */
export class ServerMetricsModel
  extends ServerDetailsStore<IServerMetrics | null>
  implements IServerMetricsModel
{
  constructor(
    serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    super(
      serverId =>
        requestAPI<IServerMetrics>(
          `servers/${serverId}/metrics`,
          {},
          serverSettings
        ),
      null
    );
  }
}
