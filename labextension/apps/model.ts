import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from '../request';
import { ServerDetailsStore } from '../servers/details';
import { IServerApp, IListeningPort, IServerWebApps } from './types';

/** The apps' path under the API, for a server. */
export function appsEndPoint(serverId: number, name?: string): string {
  const base = `servers/${serverId}/apps`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

/**
 * The web apps (those of its image) and open ports of each running compute server, with start
 * and stop. Live updates (`apps` events, the servers' states, a poll) call `refresh`.
 */
export class ServerAppsModel extends ServerDetailsStore<IServerWebApps> {
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    super(
      async serverId => {
        const [apps, ports] = await Promise.all([
          requestAPI<{ apps: IServerApp[] }>(
            appsEndPoint(serverId),
            {},
            serverSettings
          ),
          requestAPI<{ ports: IListeningPort[] }>(
            `servers/${serverId}/ports`,
            {},
            serverSettings
          )
        ]);
        return { apps: apps.apps, ports: ports.ports };
      },
      { apps: [], ports: [] }
    );
  }

  /** Start an app (if it is not running); answers it with its URL. */
  async start(serverId: number, name: string): Promise<IServerApp> {
    const app = await requestAPI<IServerApp>(
      appsEndPoint(serverId, name),
      { method: 'POST' },
      this.serverSettings
    );
    void this.refresh(serverId);
    return app;
  }

  /** Stop an app; a failure is passed on. */
  async stop(serverId: number, name: string): Promise<void> {
    try {
      await requestAPI(
        appsEndPoint(serverId, name),
        { method: 'DELETE' },
        this.serverSettings
      );
    } finally {
      void this.refresh(serverId);
    }
  }
}
