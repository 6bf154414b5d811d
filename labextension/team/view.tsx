import * as React from 'react';

import { quotaText } from '../servers/createForm';
import { IServer, ITeam } from '../servers/types';
import { IQueueEntry, ISpendRow } from './types';

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

export interface ITeamViewProps {
  team: ITeam | null;
  queue: ReadonlyArray<IQueueEntry>;
  servers: ReadonlyArray<IServer>;
  spend: ReadonlyArray<ISpendRow>;
  month: string | null;
  spendCsvUrl: string;
  loaded: boolean;
  error: string | null;
  /** Move an entry to the front of its host's queue (admins). */
  onMoveToFront: (entry: IQueueEntry) => Promise<unknown>;
  /** Cancel an entry (admins, or the owner their own). */
  onCancel: (entry: IQueueEntry) => Promise<unknown>;
}

/**
 * Team mode's section of the panel: a user's quota and their places in the GPU queues; for an
 * admin, also everyone's servers by owner, every queue with move-to-front and cancel, and this
 * month's spend per user and group with its CSV.
 */
export function TeamView(props: ITeamViewProps): JSX.Element | null {
  const { team } = props;
  const [busy, setBusy] = React.useState<number | null>(null);
  const [failure, setFailure] = React.useState<string | null>(null);
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
                </li>
              ))}
            </ul>
          )}
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
        </>
      )}
    </section>
  );
}
