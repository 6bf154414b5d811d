import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import {
  IEstimate,
  IEstimateRequest,
  IImageCatalog,
  IImageTested
} from '../create/types';
import { requestAPI } from '../request';
import { IComputeServersModel } from '../tokens';
import {
  ICloud,
  IHistoryEntry,
  IServer,
  IServerCreate,
  IServerUpdate,
  ITeam,
  ServerAction
} from './types';

/**
 * The list of compute servers and the clouds, read from the REST API. Every change made
 * through it (create, edit, delete, actions) refreshes the list; live updates (events, a poll)
 * call `refresh` from outside (see `live.ts`).
 */
export class ServersModel implements IComputeServersModel {
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  get servers(): ReadonlyArray<IServer> {
    return this._servers;
  }

  get clouds(): ReadonlyArray<ICloud> {
    return this._clouds;
  }

  get deprovisionWarning(): string {
    return this._deprovisionWarning;
  }

  get error(): string | null {
    return this._error;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  server(id: number): IServer | undefined {
    return this._servers.find(s => s.id === id);
  }

  /** Re-read the server list. Answers that arrive after a newer request's are dropped. */
  async refresh(): Promise<void> {
    const ticket = ++this._ticket;
    try {
      const data = await this._request<{ servers: IServer[] }>('servers');
      if (ticket !== this._ticket || this._isDisposed) {
        return;
      }
      this._servers = sortServers(data.servers);
      this._error = null;
      this._loaded = true;
    } catch (error) {
      if (ticket !== this._ticket || this._isDisposed) {
        return;
      }
      this._error = error instanceof Error ? error.message : String(error);
    }
    this._changed.emit();
  }

  /** Re-read the clouds: what they offer and whether they are usable now. */
  async refreshClouds(): Promise<void> {
    const data = await this._request<{
      clouds: ICloud[];
      deprovision_warning: string;
    }>('clouds');
    if (this._isDisposed) {
      return;
    }
    this._clouds = data.clouds;
    this._deprovisionWarning = data.deprovision_warning ?? '';
    this._changed.emit();
  }

  async create(body: IServerCreate): Promise<IServer> {
    const server = await this._request<IServer>('servers', {
      method: 'POST',
      body
    });
    this._upsert(server);
    void this.refresh();
    return server;
  }

  async update(id: number, body: IServerUpdate): Promise<IServer> {
    const server = await this._request<IServer>(`servers/${id}`, {
      method: 'PATCH',
      body
    });
    this._upsert(server);
    void this.refresh();
    return server;
  }

  async remove(id: number): Promise<void> {
    await this._request(`servers/${id}`, { method: 'DELETE' });
    ++this._ticket; // an answer already on its way may still list it
    this._servers = this._servers.filter(s => s.id !== id);
    this._changed.emit();
    void this.refresh();
  }

  /** Ask for a lifecycle action; it runs in the background, the answer is the server now. */
  async act(
    id: number,
    action: ServerAction,
    body: Record<string, unknown> = {}
  ): Promise<IServer> {
    const server = await this._request<IServer>(
      `servers/${id}/actions/${action}`,
      { method: 'POST', body }
    );
    this._upsert(server);
    void this.refresh();
    return server;
  }

  async history(id: number): Promise<IHistoryEntry[]> {
    const data = await this._request<{ history: IHistoryEntry[] }>(
      `servers/${id}/history`
    );
    return data.history;
  }

  async images(includeUntested = false): Promise<IImageCatalog> {
    return this._request<IImageCatalog>(
      includeUntested ? 'images?include_untested=true' : 'images'
    );
  }

  /** `POST images/tested` (admins): the version is tested, for every user of the team. */
  async markImageTested(
    image: string,
    tag: string,
    tested = true
  ): Promise<IImageTested> {
    return this._request<IImageTested>('images/tested', {
      method: 'POST',
      body: { image, tag, tested }
    });
  }

  /** `GET team`: who is asking, and what the owner may still start. */
  async team(): Promise<ITeam> {
    return this._request<ITeam>('team');
  }

  /** `POST estimate`: changes nothing; a 400 names the input at fault. */
  async estimate(body: IEstimateRequest): Promise<IEstimate> {
    return this._request<IEstimate>('estimate', { method: 'POST', body });
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    Signal.clearData(this);
  }

  private _request<T>(
    endPoint: string,
    init: Parameters<typeof requestAPI>[1] = {}
  ): Promise<T> {
    return requestAPI<T>(endPoint, init, this.serverSettings);
  }

  /** Put a server the API just answered with into the list at once, before the refresh. */
  private _upsert(server: IServer): void {
    ++this._ticket; // an older list must not overwrite this newer server
    const others = this._servers.filter(s => s.id !== server.id);
    this._servers = sortServers([...others, server]);
    this._changed.emit();
  }

  private _servers: IServer[] = [];
  private _clouds: ICloud[] = [];
  private _deprovisionWarning = '';
  private _error: string | null = null;
  private _loaded = false;
  private _ticket = 0;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}

/** Servers in the order the panel lists them: oldest first, as the API does. */
function sortServers(servers: IServer[]): IServer[] {
  return [...servers].sort((a, b) => a.id - b.id);
}
