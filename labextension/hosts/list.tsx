import * as React from 'react';

import { ApiError } from '../request';
import { describeError } from '../servers/actions';
import {
  gpuSummary,
  HOST_STATUS_LABELS,
  hostAddress,
  hostStatus,
  inventorySummary,
  ratesSummary
} from './format';
import { IHost } from './types';

/** How to check a host key on the host itself. */
export const CHECK_KEY_HINT =
  'Compare it with the fingerprint the host shows for its own key (run ' +
  'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub there, or the file of the key type ' +
  'shown, or ask its administrator). Confirm only if they match: a different key means ' +
  'something else may be answering at that address.';

/** Why a host action failed, and what to do about it. */
export function describeHostError(error: unknown): string {
  if (error instanceof ApiError && error.status === 409) {
    return `${error.message} The list has been read again.`;
  }
  return describeError(error);
}

type HostAction = 'trust' | 'inventory' | 'delete';

export interface IHostRowProps {
  host: IHost;
  /** The action in flight for this host, if any. */
  pending: HostAction | null;
  /** What the last action's failure was, if it failed. */
  error: string | null;
  onTrust: (host: IHost) => void;
  onInventory: (host: IHost) => void;
  onEdit: (host: IHost) => void;
  onDelete: (host: IHost) => void;
}

/** One host: how it is reached, its key, its inventory and rates, and what to do to it. */
export function HostRow(props: IHostRowProps): JSX.Element {
  const { host, pending } = props;
  const status = hostStatus(host);
  const inventory = host.inventory;
  const gpus = inventory?.gpus ?? [];
  const rates = ratesSummary(host);
  const busy = pending !== null;
  return (
    <li
      className="jp-ComputeServers-host"
      data-host-id={host.id}
      data-host-name={host.name}
      data-status={status}
    >
      <div className="jp-ComputeServers-serverTitle">
        <span className="jp-ComputeServers-name">{host.name}</span>
        <span
          className="jp-ComputeServers-badge jp-ComputeServers-hostStatus"
          data-status={status}
        >
          {HOST_STATUS_LABELS[status]}
        </span>
      </div>
      <div className="jp-ComputeServers-details jp-ComputeServers-hostAddress">
        {hostAddress(host)}
      </div>
      {status === 'confirm-key' && (
        <div className="jp-ComputeServers-hostKey" data-pending="true">
          <div>
            Confirm this is the host&apos;s key:{' '}
            <code className="jp-ComputeServers-fingerprint">
              {host.pending_host_key_fingerprint}
            </code>
          </div>
          <div className="jp-ComputeServers-hostKeyHint">{CHECK_KEY_HINT}</div>
          <button
            type="button"
            className="jp-ComputeServers-action jp-ComputeServers-hostTrust"
            disabled={busy}
            title={`Pin ${host.pending_host_key_fingerprint} as the key of ${host.name}, then log in and take its inventory`}
            onClick={() => props.onTrust(host)}
          >
            {pending === 'trust' ? 'Confirming…' : 'It matches: trust this key'}
          </button>
        </div>
      )}
      {host.trusted && host.host_key_fingerprint && (
        <div
          className="jp-ComputeServers-details jp-ComputeServers-hostKeyPinned"
          title={`The host key is pinned${
            host.host_key_source ? ` (${host.host_key_source})` : ''
          }`}
        >
          Key <code>{host.host_key_fingerprint}</code>
          {host.host_key_source ? ` (${host.host_key_source})` : ''}
        </div>
      )}
      {host.inventory_error && status !== 'confirm-key' && (
        <div className="jp-ComputeServers-reason" role="alert">
          {host.inventory_error}
          {host.trusted
            ? ' Check that the host is up and that your key logs in, then refresh the inventory.'
            : ' Check the address and port, then edit the host to try again.'}
        </div>
      )}
      {inventory && (
        <div className="jp-ComputeServers-inventory">
          <div className="jp-ComputeServers-details jp-ComputeServers-inventorySummary">
            {inventorySummary(inventory)}
          </div>
          {gpus.length > 0 ? (
            <ul className="jp-ComputeServers-gpuList">
              {gpus.map(gpu => (
                <li
                  key={gpu.uuid || gpu.index}
                  className="jp-ComputeServers-gpu"
                  title={gpu.uuid}
                >
                  GPU {gpu.index}: {gpuSummary(gpu)}
                </li>
              ))}
            </ul>
          ) : (
            <div className="jp-ComputeServers-details jp-ComputeServers-noGpu">
              No GPUs{inventory.gpu_reason ? `: ${inventory.gpu_reason}` : ''}
            </div>
          )}
        </div>
      )}
      {rates && (
        <div className="jp-ComputeServers-details jp-ComputeServers-hostRates">
          {rates}
        </div>
      )}
      <div className="jp-ComputeServers-actions">
        <button
          type="button"
          className="jp-ComputeServers-action"
          data-host-action="edit"
          disabled={busy}
          onClick={() => props.onEdit(host)}
        >
          Edit
        </button>
        <button
          type="button"
          className="jp-ComputeServers-action"
          data-host-action="inventory"
          disabled={busy || !host.trusted}
          title={
            host.trusted
              ? 'Log in and take the inventory again'
              : 'Confirm the host key first'
          }
          onClick={() => props.onInventory(host)}
        >
          {pending === 'inventory' ? 'Reading…' : 'Refresh inventory'}
        </button>
        <button
          type="button"
          className="jp-ComputeServers-action jp-mod-warn"
          data-host-action="delete"
          disabled={busy}
          onClick={() => props.onDelete(host)}
        >
          Delete
        </button>
      </div>
      {props.error && (
        <div className="jp-ComputeServers-reason" role="alert">
          {props.error}
        </div>
      )}
    </li>
  );
}

export interface IHostsSectionProps {
  hosts: ReadonlyArray<IHost>;
  loaded: boolean;
  /** The last refresh's error, if it failed. */
  error?: string | null;
  onAdd: () => void;
  onRefresh: () => void;
  onEdit: (host: IHost) => void;
  onTrust: (host: IHost) => Promise<unknown>;
  onInventory: (host: IHost) => Promise<unknown>;
  /** Delete (after asking); resolves when done or cancelled. */
  onDelete: (host: IHost) => Promise<unknown>;
}

/** The sidebar's Hosts section: the ssh cloud's machines, with add, edit, delete, refresh. */
export function HostsSection(props: IHostsSectionProps): JSX.Element {
  const [pending, setPending] = React.useState<
    Readonly<Record<number, HostAction>>
  >({});
  const [errors, setErrors] = React.useState<Readonly<Record<number, string>>>(
    {}
  );
  const mounted = React.useRef(true);
  React.useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const run = (
    host: IHost,
    action: HostAction,
    call: (host: IHost) => Promise<unknown>
  ) => {
    if (pending[host.id]) {
      return;
    }
    setPending(current => ({ ...current, [host.id]: action }));
    setErrors(({ [host.id]: _, ...rest }) => rest);
    call(host)
      .catch(error => {
        if (mounted.current) {
          setErrors(current => ({
            ...current,
            [host.id]: describeHostError(error)
          }));
        }
      })
      .finally(() => {
        if (mounted.current) {
          setPending(({ [host.id]: _, ...rest }) => rest);
        }
      });
  };

  const { hosts, loaded, error } = props;
  return (
    <section className="jp-ComputeServers-hosts" aria-label="Hosts">
      <header className="jp-ComputeServers-sectionHeader">
        <h3>Hosts</h3>
        <button
          type="button"
          className="jp-ComputeServers-action jp-ComputeServers-hostsRefresh"
          title="Read the hosts again"
          onClick={props.onRefresh}
        >
          Refresh
        </button>
        <button
          type="button"
          className="jp-ComputeServers-action jp-ComputeServers-hostsAdd"
          title="Register a machine you reach with ssh, to create compute servers on it"
          onClick={props.onAdd}
        >
          + Add host
        </button>
      </header>
      {error && (
        <div className="jp-ComputeServers-listError" role="alert">
          Could not read the hosts: {error}
        </div>
      )}
      {loaded && hosts.length === 0 && (
        <div className="jp-ComputeServers-empty">
          No hosts yet. Add a machine you can reach with ssh (a lab server, a
          workstation) to create compute servers on it.
        </div>
      )}
      {!loaded && !error && (
        <div className="jp-ComputeServers-empty">Loading hosts…</div>
      )}
      {hosts.length > 0 && (
        <ul className="jp-ComputeServers-hostList">
          {hosts.map(host => (
            <HostRow
              key={host.id}
              host={host}
              pending={pending[host.id] ?? null}
              error={errors[host.id] ?? null}
              onTrust={h => run(h, 'trust', props.onTrust)}
              onInventory={h => run(h, 'inventory', props.onInventory)}
              onEdit={props.onEdit}
              onDelete={h => run(h, 'delete', props.onDelete)}
            />
          ))}
        </ul>
      )}
    </section>
  );
}
