import * as React from 'react';

import { ServerCostView } from '../costs/view';
import { formatUsd } from '../create/estimate';
import { formatBytes } from '../metrics/format';
import {
  ACTION_CAPTIONS,
  ACTION_LABELS,
  hardwareSummary,
  isTransitional,
  orderedActions,
  stateLabel
} from './format';
import { AllowedAction, IServer } from './types';

/** A server's state as a badge; a spinner while an operation is under way. */
export function StateBadge(props: { state: string }): JSX.Element {
  const busy = isTransitional(props.state);
  return (
    <span
      className={
        'jp-ComputeServers-badge' + (busy ? ' jp-mod-transitional' : '')
      }
      data-state={props.state}
      aria-busy={busy}
    >
      {busy && (
        <span className="jp-ComputeServers-spinner" aria-hidden="true" />
      )}
      {stateLabel(props.state)}
    </span>
  );
}

/** What an operation under way says it is doing, with a bar when it knows how far it is. */
function Progress(props: { server: IServer }): JSX.Element | null {
  const { operation, progress } = props.server;
  if (!operation && !progress) {
    return null;
  }
  const fraction =
    progress && typeof progress.fraction === 'number'
      ? Math.min(1, Math.max(0, progress.fraction))
      : null;
  const message = progress?.message || `${stateLabel(operation ?? '')}…`;
  // Waiting in a host's GPU queue can last long: say so plainly, not as a passing step.
  const waiting = /^Waiting\b/.test(message);
  return (
    <div
      className={
        'jp-ComputeServers-progress' + (waiting ? ' jp-mod-waiting' : '')
      }
      role="status"
    >
      <span className="jp-ComputeServers-progressMessage" title={message}>
        {message}
      </span>
      {fraction !== null && (
        <progress
          className="jp-ComputeServers-progressBar"
          max={1}
          value={fraction}
        />
      )}
    </div>
  );
}

/** "1 warm kernel · 85 MB": kernels started ahead for the server, and what they hold. */
export function warmKernelsText(warm: IServer['warm_kernels']): string | null {
  if (!warm || warm.count < 1) {
    return null;
  }
  const what = `${warm.count} warm kernel${warm.count === 1 ? '' : 's'}`;
  return typeof warm.memory_bytes === 'number'
    ? `${what} · ${formatBytes(warm.memory_bytes)}`
    : what;
}

function WarmKernelsLine(props: { server: IServer }): JSX.Element | null {
  const text = warmKernelsText(props.server.warm_kernels);
  if (text === null) {
    return null;
  }
  return (
    <div
      className="jp-ComputeServers-warmKernels"
      title="Started ahead so that choosing the kernel is instant. Their memory is in use on the server; they do not keep it from stopping when idle."
    >
      {text}
    </div>
  );
}

export interface IServerRowProps {
  server: IServer;
  /** The cloud's label, when known. */
  cloudLabel?: string;
  /** A request for this server is in flight: its buttons are disabled meanwhile. */
  pending?: boolean;
  onAction: (server: IServer, action: AllowedAction) => void;
  /** More buttons, after the lifecycle actions (a running server's terminal, SSH access). */
  extraActions?: React.ReactNode;
  /** More about the server, under its buttons (its running kernels). */
  children?: React.ReactNode;
}

/** One compute server: who it is, its state, its hardware and what may be done to it now. */
export function ServerRow(props: IServerRowProps): JSX.Element {
  const { server, pending } = props;
  const hardware = hardwareSummary(server.config);
  return (
    <li
      className="jp-ComputeServers-server"
      data-server-id={server.id}
      data-server-name={server.name}
      title={server.notes || undefined}
    >
      <div className="jp-ComputeServers-serverTitle">
        <span
          className="jp-ComputeServers-swatch"
          style={{ backgroundColor: server.color }}
          aria-hidden="true"
        />
        <span className="jp-ComputeServers-name">{server.name}</span>
        <StateBadge state={server.state} />
      </div>
      <div className="jp-ComputeServers-details">
        <span
          className="jp-ComputeServers-cloud"
          title={props.cloudLabel ?? server.cloud}
        >
          {server.cloud}
        </span>
        {hardware && (
          <>
            {' · '}
            <span className="jp-ComputeServers-hardware">{hardware}</span>
          </>
        )}
        {server.spend_limit && (
          <>
            {' · '}
            <span
              className="jp-ComputeServers-spendLimit"
              title="Reaching it stops the server"
            >
              limit {formatUsd(server.spend_limit.amount)} per{' '}
              {server.spend_limit.period_days === 1
                ? 'day'
                : `${server.spend_limit.period_days} days`}
            </span>
          </>
        )}
      </div>
      <WarmKernelsLine server={server} />
      <ServerCostView server={server} />
      {server.state === 'error' && server.state_reason && (
        <div className="jp-ComputeServers-reason" role="alert">
          {server.state_reason}
        </div>
      )}
      <Progress server={server} />
      <div className="jp-ComputeServers-actions">
        {orderedActions(server.allowed_actions).map(action => (
          <button
            key={action}
            type="button"
            className={
              `jp-ComputeServers-action jp-ComputeServers-action-${action}` +
              (action === 'deprovision' || action === 'delete'
                ? ' jp-mod-warn'
                : '')
            }
            data-action={action}
            title={ACTION_CAPTIONS[action]}
            disabled={pending}
            onClick={() => props.onAction(server, action)}
          >
            {ACTION_LABELS[action]}
          </button>
        ))}
        {props.extraActions}
      </div>
      {props.children}
    </li>
  );
}

export interface IServerListProps {
  servers: ReadonlyArray<IServer>;
  loaded: boolean;
  /** The last refresh's error, if it failed. */
  error?: string | null;
  /** Cloud labels by name. */
  cloudLabels?: Readonly<Record<string, string>>;
  /** Ids of servers with a request in flight. */
  pending?: ReadonlySet<number>;
  onAction: (server: IServer, action: AllowedAction) => void;
  /** What to show under a server's buttons (its running kernels), if anything. */
  renderDetails?: (server: IServer) => React.ReactNode;
  /** More buttons for a server, after its lifecycle actions, if any. */
  renderActions?: (server: IServer) => React.ReactNode;
}

/** Every compute server, one row each. */
export function ServerList(props: IServerListProps): JSX.Element {
  const { servers, loaded, error } = props;
  return (
    <div className="jp-ComputeServers-servers">
      {error && (
        <div className="jp-ComputeServers-listError" role="alert">
          Could not read the compute servers: {error}
        </div>
      )}
      {loaded && servers.length === 0 && (
        <div className="jp-ComputeServers-empty">
          No compute servers yet. Create one with <em>New compute server</em>.
        </div>
      )}
      {!loaded && !error && (
        <div className="jp-ComputeServers-empty">Loading compute servers…</div>
      )}
      {servers.length > 0 && (
        <ul className="jp-ComputeServers-serverList">
          {servers.map(server => (
            <ServerRow
              key={server.id}
              server={server}
              cloudLabel={props.cloudLabels?.[server.cloud]}
              pending={props.pending?.has(server.id) ?? false}
              onAction={props.onAction}
              extraActions={props.renderActions?.(server)}
            >
              {props.renderDetails?.(server)}
            </ServerRow>
          ))}
        </ul>
      )}
    </div>
  );
}
