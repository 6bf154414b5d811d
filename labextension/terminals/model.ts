import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from '../request';
import { ServerDetailsStore } from '../servers/details';
import { IServerTerminalsModel } from '../tokens';
import { IRemoteTerminal, ITerminalCreate } from './types';

/** The terminals' path under the API, for a server. */
export function terminalsEndPoint(serverId: number, name?: string): string {
  const base = `servers/${serverId}/terminals`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

/** Terminals in the order the sidebar lists them: by name, numbers as numbers ("2" < "10"). */
export function sortTerminals(
  terminals: ReadonlyArray<IRemoteTerminal>
): IRemoteTerminal[] {
  return [...terminals].sort((a, b) =>
    a.name.localeCompare(b.name, undefined, { numeric: true })
  );
}

/**
 * The terminals of each compute server, read from `servers/{id}/terminals` for the servers
 * asked for, with start and end. Live updates (`terminals` events, the servers' states, a poll)
 * call `refresh` from outside (see `servers/details.ts`).
 */
export class ServerTerminalsModel
  extends ServerDetailsStore<ReadonlyArray<IRemoteTerminal>>
  implements IServerTerminalsModel
{
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {
    super(
      async serverId =>
        sortTerminals(
          (
            await requestAPI<{ terminals: IRemoteTerminal[] }>(
              terminalsEndPoint(serverId),
              {},
              serverSettings
            )
          ).terminals
        ),
      []
    );
  }

  /** Start a shell on a running server; it is listed at once. */
  async create(
    serverId: number,
    body: ITerminalCreate = {}
  ): Promise<IRemoteTerminal> {
    const terminal = await requestAPI<IRemoteTerminal>(
      terminalsEndPoint(serverId),
      { method: 'POST', body },
      this.serverSettings
    );
    const entry = this.entry(serverId);
    this.nextTicket(serverId);
    this.set(serverId, {
      ...entry,
      value: sortTerminals([
        ...entry.value.filter(t => t.name !== terminal.name),
        terminal
      ]),
      loaded: true
    });
    void this.refresh(serverId);
    return terminal;
  }

  /** End a terminal's shell; it leaves the list at once. A failure is passed on. */
  async shutdown(serverId: number, name: string): Promise<void> {
    try {
      await requestAPI(
        terminalsEndPoint(serverId, name),
        { method: 'DELETE' },
        this.serverSettings
      );
    } catch (error) {
      void this.refresh(serverId);
      throw error;
    }
    const entry = this.entry(serverId);
    if (entry.value.some(t => t.name === name)) {
      this.nextTicket(serverId);
      this.set(serverId, {
        ...entry,
        value: entry.value.filter(t => t.name !== name)
      });
    }
    void this.refresh(serverId);
  }
}
