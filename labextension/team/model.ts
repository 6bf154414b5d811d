import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { API_NAMESPACE, requestAPI } from '../request';
import { IHost } from '../hosts/types';
import { IServer, ITeam } from '../servers/types';
import {
  IAuditEntry,
  IQueueEntry,
  IRevocation,
  IRevocationDone,
  ISpendRow
} from './types';

/** How many of the audit log's newest lines the admin view shows (the CSV has them all). */
export const AUDIT_LINES = 50;

/**
 * Team mode as the panel shows it: who is asking and their quota (`GET team`), their place in
 * the GPU queues (`GET queue`: their own entries; an admin's, every host's line) and, for
 * admins, everyone's servers by owner (`GET servers?scope=all`), this month's spend per
 * user (`GET audit/spend`), the audit log's newest lines (`GET audit`) and the shared hosts
 * with who holds which slice (`GET hosts`) and the users whose access is revoked
 * (`GET team/revocations`: the control plane's, which may be missing or down without hiding
 * the rest). Read while the panel shows (`watched`), and again when the
 * servers change (`scheduleRefresh`: the queue moves as servers start and stop).
 */
export class TeamModel {
  constructor(
    private readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  get team(): ITeam | null {
    return this._team;
  }

  /** Whether the caller is an admin in team mode (the admin view shows then). */
  get isAdmin(): boolean {
    return !!this._team?.team_mode && this._team.user.admin;
  }

  get queue(): ReadonlyArray<IQueueEntry> {
    return this._queue;
  }

  get servers(): ReadonlyArray<IServer> {
    return this._servers;
  }

  get spend(): ReadonlyArray<ISpendRow> {
    return this._spend;
  }

  /** The audit log's newest lines, newest first (admins). */
  get audit(): ReadonlyArray<IAuditEntry> {
    return this._audit;
  }

  /** The registered hosts, each with who holds which slice (admins). */
  get hosts(): ReadonlyArray<IHost> {
    return this._hosts;
  }

  /** The users whose access is revoked (admins); null when they could not be read. */
  get revocations(): ReadonlyArray<IRevocation> | null {
    return this._revocations;
  }

  /** Why the revocations could not be read (no control plane, or it is down). */
  get revocationsError(): string | null {
    return this._revocationsError;
  }

  get month(): string | null {
    return this._month;
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
    // Standalone (no team mode) there is nothing more to read once it is known.
    if (value && !(this._team && !this._team.team_mode)) {
      void this.refresh();
    }
  }

  /** Where the CSV of this month's spend per user and group downloads from. */
  get spendCsvUrl(): string {
    const month = this._month
      ? `&month=${encodeURIComponent(this._month)}`
      : '';
    return (
      URLExt.join(
        this.serverSettings.baseUrl,
        API_NAMESPACE,
        'audit',
        'spend'
      ) + `?format=csv${month}`
    );
  }

  /** Where the CSV of the whole audit log downloads from. */
  get auditCsvUrl(): string {
    return (
      URLExt.join(this.serverSettings.baseUrl, API_NAMESPACE, 'audit') +
      '?format=csv'
    );
  }

  /** Re-read everything the caller may see. Answers after a newer request's are dropped. */
  async refresh(): Promise<void> {
    const ticket = ++this._ticket;
    try {
      // Independent reads, asked together: one round trip each step, not one per read.
      const [team, queue] = await Promise.all([
        this._request<ITeam>('team'),
        this._request<{ entries: IQueueEntry[] }>('queue')
      ]);
      let servers: IServer[] = [];
      let spend: ISpendRow[] = [];
      let audit: IAuditEntry[] = [];
      let hosts: IHost[] = [];
      let revocations: IRevocation[] | null = null;
      let revocationsError: string | null = null;
      if (team.team_mode && team.user.admin) {
        const answers = await Promise.all([
          this._request<{ servers: IServer[] }>('servers?scope=all'),
          this._request<{ rows: ISpendRow[] }>(
            `audit/spend?month=${encodeURIComponent(team.month)}`
          ),
          this._request<{ entries: IAuditEntry[] }>(
            `audit?limit=${AUDIT_LINES}`
          ),
          this._request<{ hosts: IHost[] }>('hosts'),
          // Kept apart: without a (reachable) control plane the rest still shows.
          this._request<{ revocations: IRevocation[] }>(
            'team/revocations'
          ).then(
            answer => ({ list: answer.revocations, error: null }),
            (reason: unknown) => ({
              list: null,
              error: reason instanceof Error ? reason.message : String(reason)
            })
          )
        ]);
        servers = answers[0].servers;
        spend = answers[1].rows;
        // The API answers the newest lines oldest first; the view shows the newest first.
        audit = answers[2].entries.reverse();
        hosts = answers[3].hosts;
        revocations = answers[4].list;
        revocationsError = answers[4].error;
      }
      if (ticket !== this._ticket || this._disposed) {
        return;
      }
      this._team = team;
      this._queue = queue.entries;
      this._servers = servers;
      this._spend = spend;
      this._audit = audit;
      this._hosts = hosts;
      this._revocations = revocations;
      this._revocationsError = revocationsError;
      this._month = team.month;
      this._error = null;
      this._loaded = true;
    } catch (error) {
      if (ticket !== this._ticket || this._disposed) {
        return;
      }
      this._error = error instanceof Error ? error.message : String(error);
    }
    this._changed.emit();
  }

  /** Refresh soon (once for a burst of server events), while watched; standalone (no team
   * mode), nothing is read again. */
  scheduleRefresh(delay = 500): void {
    if (!this._watched || this._timer !== null || this._disposed) {
      return;
    }
    if (this._team && !this._team.team_mode) {
      return;
    }
    this._timer = setTimeout(() => {
      this._timer = null;
      void this.refresh();
    }, delay);
  }

  /** Move a waiting server to the front of its host's queue (admins). */
  async moveToFront(serverId: number): Promise<void> {
    await this._change(`queue/${serverId}`, {
      method: 'PATCH',
      body: { position: 1 }
    });
  }

  /** Cancel a waiting server's place in its queue (admins, or its owner). */
  async cancel(serverId: number): Promise<void> {
    await this._change(`queue/${serverId}`, { method: 'DELETE' });
  }

  /** Revoke `user`'s access at once (admins; the control plane ends their sessions). */
  async revoke(user: string): Promise<IRevocationDone> {
    try {
      return await this._request<IRevocationDone>('team/revocations', {
        method: 'POST',
        body: { user }
      });
    } finally {
      await this.refresh();
    }
  }

  /** Let `user` get credentials again (admins). */
  async restore(user: string): Promise<void> {
    await this._change(`team/revocations/${encodeURIComponent(user)}`, {
      method: 'DELETE'
    });
  }

  dispose(): void {
    this._disposed = true;
    if (this._timer !== null) {
      clearTimeout(this._timer);
      this._timer = null;
    }
    Signal.clearData(this);
  }

  private async _change(
    endPoint: string,
    init: Parameters<typeof requestAPI>[1]
  ): Promise<void> {
    try {
      await this._request(endPoint, init);
    } finally {
      await this.refresh();
    }
  }

  private _request<T>(
    endPoint: string,
    init: Parameters<typeof requestAPI>[1] = {}
  ): Promise<T> {
    return requestAPI<T>(endPoint, init, this.serverSettings);
  }

  private _team: ITeam | null = null;
  private _queue: IQueueEntry[] = [];
  private _servers: IServer[] = [];
  private _spend: ISpendRow[] = [];
  private _audit: IAuditEntry[] = [];
  private _hosts: IHost[] = [];
  private _revocations: IRevocation[] | null = null;
  private _revocationsError: string | null = null;
  private _month: string | null = null;
  private _loaded = false;
  private _error: string | null = null;
  private _watched = false;
  private _ticket = 0;
  private _timer: ReturnType<typeof setTimeout> | null = null;
  private _disposed = false;
  private _changed = new Signal<this, void>(this);
}
