import * as React from 'react';

import { IHost } from '../hosts/types';
import { quotaText } from '../servers/createForm';
import { IServer, ITeam } from '../servers/types';
import { AccessView, confirmRevoke, revokedNotice } from './access';
import {
  IAuditEntry,
  IHostSlice,
  IQueueEntry,
  IRevocation,
  IRevocationDone,
  ISpendRow
} from './types';

/** "2nd of 3 on lab-gpu": where an entry stands in its host's line. */
export function positionText(entry: IQueueEntry): string {
  return `${ordinal(entry.position)} of ${entry.queue_length} on ${entry.host_name || `host ${entry.host_id}`}`;
}

/** The entry's estimate in words: a time, or "unknown" with why. */
export function estimateText(entry: IQueueEntry, now = Date.now()): string {
  const at = entry.estimated_start.at;
  if (at === null) {
    return `Estimated start: ${entry.estimated_start.basis}.`;
  }
  const minutes = Math.max(Math.round((at * 1000 - now) / 60000), 0);
  const when = new Date(at * 1000).toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit'
  });
  return `Estimated start: about ${when} (in ${minutes} min), from ${entry.estimated_start.basis}.`;
}

/** Why an entry over its owner's cap is passed over. */
export function capText(entry: IQueueEntry): string | null {
  if (!entry.over_cap || entry.cap === null) {
    return null;
  }
  return (
    `${entry.owner} holds ${entry.held} of this host's GPUs, the most one user may hold at ` +
    `once (${entry.cap}): the next user's request is served first.`
  );
}

function ordinal(n: number): string {
  const tens = n % 100;
  const suffix =
    tens >= 10 && tens <= 20
      ? 'th'
      : (({ 1: 'st', 2: 'nd', 3: 'rd' } as Record<number, string>)[n % 10] ??
        'th');
  return `${n}${suffix}`;
}

function dollars(amount: number): string {
  return `$${amount.toFixed(2)}`;
}

/** Servers grouped by owner, owners in name order. */
export function byOwner(
  servers: ReadonlyArray<IServer>
): Array<[string, IServer[]]> {
  const groups = new Map<string, IServer[]>();
  for (const server of servers) {
    const owner = server.owner || '(no owner)';
    groups.set(owner, [...(groups.get(owner) ?? []), server]);
  }
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b));
}

/** A host's GPUs by type: "2x NVIDIA A100-SXM4-80GB, 1x NVIDIA T4", or why there are none. */
export function hostGpusText(host: IHost): string {
  const gpus = host.inventory?.gpus ?? [];
  if (!host.inventory) {
    return host.inventory_error
      ? `not inventoried: ${host.inventory_error}`
      : 'not inventoried yet';
  }
  if (gpus.length === 0) {
    return 'no GPUs';
  }
  const counts = new Map<string, number>();
  for (const gpu of gpus) {
    counts.set(gpu.name, (counts.get(gpu.name) ?? 0) + 1);
  }
  return [...counts.entries()].map(([name, n]) => `${n}x ${name}`).join(', ');
}

/** The GPU (or MIG instance) names of a host's inventory, by UUID. */
function gpuNames(host: IHost): Map<string, string> {
  const names = new Map<string, string>();
  for (const gpu of host.inventory?.gpus ?? []) {
    names.set(gpu.uuid, gpu.name);
    for (const device of gpu.mig_devices ?? []) {
      names.set(device.uuid, device.name);
    }
  }
  return names;
}

/** Who holds a slice and what it holds: "gpu-box of alice (as alice): 2 CPUs, 8 GB, NVIDIA T4". */
export function sliceText(slice: IHostSlice, host: IHost): string {
  const names = gpuNames(host);
  const server = slice.server_name || `server ${slice.server_id}`;
  const account =
    slice.unix_user && slice.unix_user !== slice.owner
      ? ` (as ${slice.unix_user})`
      : '';
  const gpus = slice.gpu_uuids.map(uuid => names.get(uuid) ?? uuid);
  const share =
    slice.gpu_fraction !== null && gpus.length
      ? [`${slice.gpu_fraction} of ${gpus[0]}`]
      : gpus;
  return (
    `${server} of ${slice.owner || 'no owner'}${account}: ` +
    [
      `${slice.cpu} CPU${slice.cpu === 1 ? '' : 's'}`,
      `${slice.memory_gb} GB`,
      ...share
    ].join(', ')
  );
}

/** What an audit line records: "edit (name, notes)". */
export function auditWhat(entry: IAuditEntry): string {
  return entry.detail ? `${entry.action} (${entry.detail})` : entry.action;
}

/** An audit line in words: "root: queue_move (to 1), gpu-box (4) of bob". */
export function auditText(entry: IAuditEntry): string {
  const id = entry.server_id === null ? '' : ` (${entry.server_id})`;
  const server = `${entry.server_name || 'a server'}${id}`;
  return `${entry.actor}: ${auditWhat(entry)}, ${server} of ${entry.owner || 'no owner'}`;
}

export interface ITeamViewProps {
  team: ITeam | null;
  queue: ReadonlyArray<IQueueEntry>;
  servers: ReadonlyArray<IServer>;
  spend: ReadonlyArray<ISpendRow>;
  month: string | null;
  spendCsvUrl: string;
  /** The audit log's newest lines, newest first (admins). */
  audit: ReadonlyArray<IAuditEntry>;
  auditCsvUrl: string;
  /** The shared hosts, with who holds which slice (admins). */
  hosts: ReadonlyArray<IHost>;
  loaded: boolean;
  error: string | null;
  /** Move an entry to the front of its host's queue (admins). */
  onMoveToFront: (entry: IQueueEntry) => Promise<unknown>;
  /** Cancel an entry (admins, or the owner their own). */
  onCancel: (entry: IQueueEntry) => Promise<unknown>;
  /** The users whose access is revoked (admins); null when they could not be read. */
  revocations: ReadonlyArray<IRevocation> | null;
  /** Why the revocations could not be read (no control plane, or it is down). */
  revocationsError: string | null;
  /** Revoke a user's access (admins; the view asks first). */
  onRevoke: (user: string) => Promise<IRevocationDone>;
  /** Restore a user's access (admins). */
  onRestore: (user: string) => Promise<unknown>;
}

/**
 * Team mode's section of the panel: a user's quota and their places in the GPU queues; for an
 * admin, also everyone's servers by owner, every queue with move-to-front and cancel, this
 * month's spend per user and group with its CSV, the shared hosts with who holds which slice,
 * the audit log's newest lines with the CSV of all of it, and the users' access: Revoke on a
 * user's row (after a confirmation), the revoked users with Restore (`access.tsx`).
 */
export function TeamView(props: ITeamViewProps): JSX.Element | null {
  const { team } = props;
  const [busy, setBusy] = React.useState<number | null>(null);
  const [failure, setFailure] = React.useState<string | null>(null);
  // The user whose access is being revoked or restored, and what the last revoke ended.
  const [accessBusy, setAccessBusy] = React.useState<string | null>(null);
  const [notice, setNotice] = React.useState<string | null>(null);
  if (!team) {
    return props.error ? (
      <section className="jp-ComputeServers-team">
        <p className="jp-ComputeServers-error" role="alert">
          Could not read the team's quota and queue: {props.error}
        </p>
      </section>
    ) : null;
  }
  if (!team.team_mode) {
    return null;
  }
  const admin = team.user.admin;
  const act = (
    entry: IQueueEntry,
    what: string,
    run: (entry: IQueueEntry) => Promise<unknown>
  ) => {
    setBusy(entry.server_id);
    setFailure(null);
    run(entry)
      .catch(reason =>
        setFailure(
          `Could not ${what} ${entry.server_name}: ${reason instanceof Error ? reason.message : String(reason)}`
        )
      )
      .finally(() => setBusy(null));
  };
  const changeAccess = async (
    user: string,
    what: string,
    run: () => Promise<string | null>
  ) => {
    setAccessBusy(user);
    setFailure(null);
    setNotice(null);
    try {
      setNotice(await run());
    } catch (reason) {
      setFailure(
        `Could not ${what} ${user}'s access: ${reason instanceof Error ? reason.message : String(reason)}`
      );
    } finally {
      setAccessBusy(null);
    }
  };
  const revoke = async (user: string) => {
    if (await confirmRevoke(user)) {
      await changeAccess(user, 'revoke', async () =>
        revokedNotice(await props.onRevoke(user))
      );
    }
  };
  const restore = (user: string) =>
    changeAccess(user, 'restore', async () => {
      await props.onRestore(user);
      return `${user}'s access is restored: they may get new credentials.`;
    });
  const revoked = new Set((props.revocations ?? []).map(r => r.user));
  const quota = quotaText(team);
  const users = props.spend.filter(row => row.kind === 'user');
  const groups = props.spend.filter(row => row.kind === 'group');
  return (
    <section className="jp-ComputeServers-team" aria-label="Team">
      <h3>{admin ? 'Team (admin)' : 'Team'}</h3>
      <p className="jp-ComputeServers-team-quota">
        {quota ?? `${team.owner}: no quota limits.`}
      </p>
      {props.error && (
        <p className="jp-ComputeServers-error" role="alert">
          {props.error}
        </p>
      )}
      {failure && (
        <p className="jp-ComputeServers-error" role="alert">
          {failure}
        </p>
      )}
      {notice && (
        <p className="jp-ComputeServers-team-notice" role="status">
          {notice}
        </p>
      )}
      <h4>{admin ? 'GPU queues' : 'Your place in the GPU queues'}</h4>
      {props.queue.length === 0 ? (
        <p className="jp-ComputeServers-team-empty">
          {admin
            ? 'No server is waiting for a GPU.'
            : 'None of your servers is waiting for a GPU.'}
        </p>
      ) : (
        <ul className="jp-ComputeServers-queue">
          {props.queue.map(entry => (
            <li
              key={entry.server_id}
              className="jp-ComputeServers-queue-entry"
              data-server-id={entry.server_id}
            >
              <div>
                <strong>{entry.server_name}</strong>
                {admin && (
                  <span className="jp-ComputeServers-owner">
                    {' '}
                    ({entry.owner})
                  </span>
                )}
                {': '}
                <span className="jp-ComputeServers-queue-position">
                  {positionText(entry)}
                </span>
                {entry.cancelled_by && ` (cancelled by ${entry.cancelled_by})`}
              </div>
              <div className="jp-ComputeServers-queue-estimate">
                {estimateText(entry)}
              </div>
              {capText(entry) && (
                <div className="jp-ComputeServers-queue-cap">
                  {capText(entry)}
                </div>
              )}
              <div className="jp-ComputeServers-queue-actions">
                {admin && entry.position > 1 && (
                  <button
                    type="button"
                    className="jp-mod-styled jp-ComputeServers-queue-front"
                    disabled={busy !== null}
                    onClick={() => act(entry, 'move', props.onMoveToFront)}
                  >
                    Move to front
                  </button>
                )}
                {!entry.cancelled_by && (
                  <button
                    type="button"
                    className="jp-mod-styled jp-mod-warn jp-ComputeServers-queue-cancel"
                    disabled={busy !== null}
                    onClick={() => act(entry, 'cancel', props.onCancel)}
                  >
                    Cancel
                  </button>
                )}
              </div>
            </li>
          ))}
        </ul>
      )}
      {admin && (
        <>
          <h4>Servers by user</h4>
          {props.servers.length === 0 ? (
            <p className="jp-ComputeServers-team-empty">
              No user has a server.
            </p>
          ) : (
            <ul className="jp-ComputeServers-team-owners">
              {byOwner(props.servers).map(([owner, servers]) => (
                <li key={owner} data-owner={owner}>
                  <strong>{owner}</strong>:{' '}
                  {servers.map(s => `${s.name} (${s.state})`).join(', ')}
                  {revoked.has(owner) && (
                    <span className="jp-ComputeServers-owner-revoked">
                      {' '}
                      (access revoked)
                    </span>
                  )}
                  {/* Offered once the control plane's list is read: it is who revokes. */}
                  {props.revocations !== null &&
                    !revoked.has(owner) &&
                    owner !== team.user.name && (
                      <>
                        {' '}
                        <button
                          type="button"
                          className="jp-mod-styled jp-mod-warn jp-ComputeServers-revoke"
                          disabled={accessBusy !== null}
                          title={`Revoke ${owner}'s access: their sessions end, their servers keep running`}
                          onClick={() => void revoke(owner)}
                        >
                          Revoke access
                        </button>
                      </>
                    )}
                </li>
              ))}
            </ul>
          )}
          <AccessView
            revocations={props.revocations}
            error={props.revocationsError}
            self={team.user.name}
            busy={accessBusy !== null}
            onRevoke={user => void revoke(user)}
            onRestore={user => void restore(user)}
          />
          <h4>Spend in {props.month ?? 'this month'}</h4>
          {users.length === 0 ? (
            <p className="jp-ComputeServers-team-empty">
              Nothing spent yet this month.
            </p>
          ) : (
            <table className="jp-ComputeServers-spend">
              <thead>
                <tr>
                  <th scope="col">User</th>
                  <th scope="col">Spent</th>
                  <th scope="col">Servers</th>
                </tr>
              </thead>
              <tbody>
                {users.map(row => (
                  <tr key={row.name} data-user={row.name}>
                    <td>{row.name}</td>
                    <td title={row.unknown || undefined}>
                      {dollars(row.spent)}
                      {row.unknown ? ' or more' : ''}
                    </td>
                    <td>
                      {row.servers}
                      {row.deleted_servers
                        ? ` (${row.deleted_servers} deleted)`
                        : ''}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {groups.length > 0 && (
            <p className="jp-ComputeServers-spend-groups">
              By group:{' '}
              {groups
                .map(row => `${row.name} ${dollars(row.spent)}`)
                .join(', ')}
            </p>
          )}
          <a
            className="jp-ComputeServers-spend-csv"
            href={props.spendCsvUrl}
            download
          >
            Download spend per user and group (CSV)
          </a>
          <h4>Shared hosts</h4>
          {props.hosts.length === 0 ? (
            <p className="jp-ComputeServers-team-empty">
              No host is registered.
            </p>
          ) : (
            <ul className="jp-ComputeServers-team-hosts">
              {props.hosts.map(host => (
                <li key={host.id} data-host-id={host.id}>
                  <div className="jp-ComputeServers-team-host">
                    <strong>{host.name}</strong> ({host.hostname}
                    {host.port === 22 ? '' : `:${host.port}`}):{' '}
                    {hostGpusText(host)}
                    {host.trusted ? '' : '; its key is not confirmed yet'}
                  </div>
                  {(host.slices ?? []).length === 0 ? (
                    <div className="jp-ComputeServers-team-empty">
                      No slice is held.
                    </div>
                  ) : (
                    <ul className="jp-ComputeServers-team-slices">
                      {(host.slices ?? []).map(slice => (
                        <li
                          key={slice.server_id}
                          data-server-id={slice.server_id}
                        >
                          {sliceText(slice, host)}
                        </li>
                      ))}
                    </ul>
                  )}
                </li>
              ))}
            </ul>
          )}
          <h4>Audit log</h4>
          {props.audit.length === 0 ? (
            <p className="jp-ComputeServers-team-empty">
              Nothing recorded yet.
            </p>
          ) : (
            <ul className="jp-ComputeServers-audit">
              {props.audit.map((entry, index) => (
                <li
                  key={index}
                  className="jp-ComputeServers-audit-entry"
                  data-server-id={entry.server_id ?? undefined}
                >
                  <div className="jp-ComputeServers-audit-line">
                    {auditText(entry)}
                  </div>
                  <time
                    className="jp-ComputeServers-audit-when"
                    dateTime={new Date(entry.at * 1000).toISOString()}
                  >
                    {new Date(entry.at * 1000).toLocaleString()}
                  </time>
                </li>
              ))}
            </ul>
          )}
          <a
            className="jp-ComputeServers-audit-csv"
            href={props.auditCsvUrl}
            download
          >
            Download the audit log (CSV)
          </a>
        </>
      )}
    </section>
  );
}
