import { ServerConnection } from '@jupyterlab/services';
import * as React from 'react';

import { ApiError } from '../request';
import { describeError } from '../servers/actions';
import { IServerEntry } from '../tokens';
import { IRemoteKernel } from './types';
import { useItemActions } from '../servers/itemActions';

/** The orphan marker's tooltip. */
export const ORPHAN_CAPTION =
  'Still running on the server after the Jupyter server that started it went away. ' +
  'Nothing uses it, but it may be holding GPUs and memory: shut it down unless you need it.';

/** How long ago a kernel started, in a few characters: "40 s", "12 min", "3 h 5 min", "2 d". */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) {
    return `${s} s`;
  }
  const minutes = Math.floor(s / 60);
  if (minutes < 60) {
    return `${minutes} min`;
  }
  const hours = Math.floor(minutes / 60);
  if (hours < 24) {
    const rest = minutes % 60;
    return rest ? `${hours} h ${rest} min` : `${hours} h`;
  }
  return `${Math.floor(hours / 24)} d`;
}

/** A kernel's name without the " on <server>" its spec's display name ends with. */
export function kernelLabel(kernel: IRemoteKernel, serverName: string): string {
  const name = kernel.display_name || kernel.kernel || kernel.kernel_id;
  const suffix = ` on ${serverName}`;
  return name.endsWith(suffix) && name.length > suffix.length
    ? name.slice(0, -suffix.length)
    : name;
}

/** Why a shut down failed, and what to do about it. */
export function describeShutdownError(
  error: unknown,
  serverName: string
): string {
  if (error instanceof ApiError) {
    if (error.status === 404) {
      return `${error.message} It has probably ended already; the list has been read again.`;
    }
    if (error.status === 502 || error.status === 503 || error.status === 504) {
      return `${error.message} Check that ${serverName} is running and reachable (its state in this panel), then try again.`;
    }
    if (error.status === 403) {
      return `${error.message} You are not allowed to shut down kernels on this Jupyter server.`;
    }
  }
  if (error instanceof ServerConnection.NetworkError) {
    return describeError(error);
  }
  const message = describeError(error);
  return `${message} Try again; if it keeps failing, see the Jupyter server's log.`;
}

export interface IServerKernelsProps {
  /** The server's name, for messages. */
  serverName: string;
  entry: IServerEntry<ReadonlyArray<IRemoteKernel>>;
  /** Shut a kernel down; a rejection is shown under the kernel. */
  onShutdown: (kernel: IRemoteKernel) => Promise<void>;
  /** Read the kernels again (offered when reading them failed). */
  onRetry?: () => void;
  /** The notebook or console a kernel of this Jupyter server belongs to, if known. */
  sessionPath?: (kernelId: string) => string | null | undefined;
  /** Now, in seconds since the epoch (for the ages; default the clock). */
  now?: number;
}

/** The kernels running on one compute server, each with its age and a Shut down button. */
export function ServerKernels(props: IServerKernelsProps): JSX.Element {
  const { entry, serverName } = props;
  const {
    pending,
    errors,
    run: shutdown
  } = useItemActions<IRemoteKernel>(
    kernel => kernel.kernel_id,
    item => props.onShutdown(item),
    error => describeShutdownError(error, serverName)
  );

  const now = props.now ?? Date.now() / 1000;
  const count = entry.value.length;
  return (
    <div
      className="jp-ComputeServers-kernels"
      aria-label={`Kernels on ${serverName}`}
    >
      <div className="jp-ComputeServers-kernelsHeader">
        {entry.loaded
          ? count === 0
            ? 'No kernels running'
            : `${count} kernel${count === 1 ? '' : 's'} running`
          : entry.error
            ? 'Kernels'
            : 'Reading the kernels…'}
      </div>
      {entry.error && (
        <div className="jp-ComputeServers-kernelsError" role="alert">
          Could not read the kernels on {serverName}: {entry.error}{' '}
          {props.onRetry && (
            <button
              type="button"
              className="jp-ComputeServers-kernelsRetry"
              onClick={props.onRetry}
            >
              Try again
            </button>
          )}
        </div>
      )}
      {count > 0 && (
        <ul className="jp-ComputeServers-kernelList">
          {entry.value.map(kernel => {
            const id = kernel.kernel_id;
            const label = kernelLabel(kernel, serverName);
            const path = kernel.attached ? props.sessionPath?.(id) : null;
            const started =
              typeof kernel.started === 'number' ? kernel.started : null;
            return (
              <li
                key={id}
                className="jp-ComputeServers-kernel"
                data-kernel-id={id}
                data-attached={kernel.attached}
              >
                <div className="jp-ComputeServers-kernelTitle">
                  <span
                    className="jp-ComputeServers-kernelName"
                    title={
                      `${kernel.display_name || label}\nKernel id: ${id}` +
                      (kernel.pid
                        ? `\nProcess ${kernel.pid} on ${serverName}`
                        : '')
                    }
                  >
                    {label}
                  </span>
                  {!kernel.attached && (
                    <span
                      className="jp-ComputeServers-orphan"
                      title={ORPHAN_CAPTION}
                    >
                      orphan
                    </span>
                  )}
                  {started !== null && (
                    <span
                      className="jp-ComputeServers-kernelAge"
                      title={`Started ${new Date(started * 1000).toLocaleString()}`}
                    >
                      {formatAge(now - started)}
                    </span>
                  )}
                  <button
                    type="button"
                    className="jp-ComputeServers-kernelShutdown jp-mod-warn"
                    title={`Shut down ${label} on ${serverName}`}
                    disabled={pending.has(id)}
                    onClick={() => shutdown(kernel)}
                  >
                    {pending.has(id) ? 'Shutting down…' : 'Shut down'}
                  </button>
                </div>
                {path && (
                  <div className="jp-ComputeServers-kernelPath" title={path}>
                    {path}
                  </div>
                )}
                {errors[id] && (
                  <div className="jp-ComputeServers-kernelError" role="alert">
                    Could not shut down {label}: {errors[id]}
                  </div>
                )}
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}
