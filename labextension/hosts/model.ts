import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { requestAPI } from '../request';
import { IHostsModel } from '../tokens';
import { IHost, IHostFields, IHostUpdate } from './types';

/**
 * The on-prem hosts of the ssh cloud, read from `compute-servers/api/hosts`. Every change made
 * through it refreshes the list and calls `onChange` (the plugin re-reads the clouds then: what
 * the ssh cloud offers depends on the hosts). Shown again (`watched`), it re-reads the list:
 * hosts change rarely, and only through this API or the command line.
 */
export class HostsModel implements IHostsModel {
  /**
   * @param onChange called after every change made through the model
   * @param isEnabled whether the hosts are of use now (the ssh cloud is enabled); shown while
   *   they are not, they are not read
   */
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings(),
    private readonly onChange: () => void = () => undefined,
    private readonly isEnabled: () => boolean = () => true
  ) {}

  get hosts(): ReadonlyArray<IHost> {
    return this._hosts;
  }

  get loaded(): boolean {
    return this._loaded;
  }

  get error(): string | null {
    return this._error;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get watched(): boolean {
    return this._watched;
  }

  set watched(value: boolean) {
    if (value === this._watched) {
      return;
    }
    this._watched = value;
    if (value && this.isEnabled()) {
      void this.refresh();
    }
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  host(id: number): IHost | undefined {
    return this._hosts.find(h => h.id === id);
  }

  /** Re-read the hosts. Answers that arrive after a newer request's are dropped. */
  async refresh(): Promise<void> {
    const ticket = ++this._ticket;
    try {
      const data = await this._request<{ hosts: IHost[] }>('hosts');
      if (ticket !== this._ticket || this._isDisposed) {
        return;
      }
      this._hosts = sortHosts(data.hosts);
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

  /**
   * Register a host. Its key is pinned from ~/.ssh/known_hosts when it is there (and the
   * inventory taken); otherwise it comes back untrusted, with the fingerprint to confirm.
   */
  async create(body: IHostFields): Promise<IHost> {
    return this._changedHost(
      await this._request<IHost>('hosts', { method: 'POST', body })
    );
  }

  async update(id: number, body: IHostUpdate): Promise<IHost> {
    return this._changedHost(
      await this._request<IHost>(`hosts/${id}`, { method: 'PATCH', body })
    );
  }

  async trust(id: number, fingerprint: string): Promise<IHost> {
    return this.update(id, { trust_host_key: fingerprint });
  }

  async inventory(id: number): Promise<IHost> {
    return this._changedHost(
      await this._request<IHost>(`hosts/${id}/inventory`, { method: 'POST' })
    );
  }

  async remove(id: number): Promise<void> {
    await this._request(`hosts/${id}`, { method: 'DELETE' });
    ++this._ticket;
    this._hosts = this._hosts.filter(h => h.id !== id);
    this._changed.emit();
    this.onChange();
    void this.refresh();
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

  /** Put a host the API just answered with into the list at once, before the refresh. */
  private _changedHost(host: IHost): IHost {
    ++this._ticket;
    this._hosts = sortHosts([
      ...this._hosts.filter(h => h.id !== host.id),
      host
    ]);
    this._changed.emit();
    this.onChange();
    void this.refresh();
    return host;
  }

  private _hosts: IHost[] = [];
  private _loaded = false;
  private _error: string | null = null;
  private _watched = false;
  private _ticket = 0;
  private _isDisposed = false;
  private _changed = new Signal<this, void>(this);
}

/** Hosts in the order the sidebar lists them: by name. */
function sortHosts(hosts: IHost[]): IHost[] {
  return [...hosts].sort((a, b) => a.name.localeCompare(b.name));
}
