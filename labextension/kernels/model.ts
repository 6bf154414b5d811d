import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { requestAPI } from '../request';
import { IServerKernels, IServerKernelsModel } from '../tokens';
import { IRemoteKernel } from './types';

/** What a server's entry is before its first answer. */
const EMPTY: IServerKernels = Object.freeze({
  kernels: [],
  loaded: false,
  error: null
});

/**
 * The kernels running on each compute server, read from `servers/{id}/kernels`, for the servers
 * asked for. Live updates (events, the servers' states, a poll) call `refresh` from outside
 * (see `live.ts`).
 */
export class ServerKernelsModel implements IServerKernelsModel {
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  get changed(): ISignal<this, number> {
    return this._changed;
  }

  get watched(): boolean {
    return this._watched;
  }

  set watched(value: boolean) {
    if (value !== this._watched) {
      this._watched = value;
      this._watchedChanged.emit(value);
    }
  }

  get watchedChanged(): ISignal<this, boolean> {
    return this._watchedChanged;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  kernels(serverId: number): IServerKernels {
    return this._entries.get(serverId) ?? EMPTY;
  }

  /** Re-read a server's kernels. Answers that arrive after a newer request's are dropped. */
  async refresh(serverId: number): Promise<void> {
    const ticket = this._nextTicket(serverId);
    let next: IServerKernels;
    try {
      const data = await requestAPI<{ kernels: IRemoteKernel[] }>(
        `servers/${serverId}/kernels`,
        {},
        this.serverSettings
      );
      next = { kernels: sortKernels(data.kernels), loaded: true, error: null };
    } catch (error) {
      next = {
        ...this.kernels(serverId),
        error: error instanceof Error ? error.message : String(error)
      };
    }
    if (this._isDisposed || this._tickets.get(serverId) !== ticket) {
      return;
    }
    this._entries.set(serverId, next);
    this._changed.emit(serverId);
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
    const entry = this._entries.get(serverId);
    if (entry && entry.kernels.some(k => k.kernel_id === kernelId)) {
      // Gone now, whatever a refresh already on its way says.
      this._nextTicket(serverId);
      this._entries.set(serverId, {
        ...entry,
        kernels: entry.kernels.filter(k => k.kernel_id !== kernelId)
      });
      this._changed.emit(serverId);
    }
    void this.refresh(serverId);
  }

  /** Forget a server's kernels (it stopped, or was deleted). */
  forget(serverId: number): void {
    this._nextTicket(serverId);
    if (this._entries.delete(serverId)) {
      this._changed.emit(serverId);
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    Signal.clearData(this);
  }

  private _nextTicket(serverId: number): number {
    const ticket = (this._tickets.get(serverId) ?? 0) + 1;
    this._tickets.set(serverId, ticket);
    return ticket;
  }

  private _entries = new Map<number, IServerKernels>();
  private _tickets = new Map<number, number>();
  private _watched = false;
  private _isDisposed = false;
  private _changed = new Signal<this, number>(this);
  private _watchedChanged = new Signal<this, boolean>(this);
}

/** Orphans first (they may hold GPUs for nobody), then oldest first. */
function sortKernels(kernels: IRemoteKernel[]): IRemoteKernel[] {
  return [...kernels].sort(
    (a, b) =>
      Number(a.attached) - Number(b.attached) ||
      (a.started ?? 0) - (b.started ?? 0)
  );
}
