import * as React from 'react';

import { formatAge } from '../kernels/list';
import { ApiError } from '../request';
import { describeError } from '../servers/actions';
import { IServerEntry } from '../tokens';
import { IRemoteTerminal } from './types';
import { useItemActions } from '../servers/itemActions';

/** Why ending a terminal failed, and what to do about it. */
export function describeEndError(error: unknown, serverName: string): string {
  if (error instanceof ApiError) {
    if (error.status === 404) {
      return `${error.message} It has probably ended already; the list has been read again.`;
    }
    if (error.status === 409) {
      return `${error.message} Its shells ended with it.`;
    }
    if (error.status === 502 || error.status === 503 || error.status === 504) {
      return `${error.message} Check that ${serverName} is running and reachable, then try again.`;
    }
  }
  return describeError(error);
}

export interface IServerTerminalsProps {
  /** The server's name, for messages. */
  serverName: string;
  entry: IServerEntry<ReadonlyArray<IRemoteTerminal>>;
  /** Open (or show) a terminal's tab. */
  onOpen: (terminal: IRemoteTerminal) => void;
  /** End a terminal's shell; a rejection is shown under the terminal. */
  onEnd: (terminal: IRemoteTerminal) => Promise<void>;
  /** Read the terminals again (offered when reading them failed). */
  onRetry?: () => void;
  /** Now, in seconds since the epoch (for the ages; default the clock). */
  now?: number;
}

/** The terminals of one running compute server, each with Open and End. */
export function ServerTerminals(props: IServerTerminalsProps): JSX.Element {
  const { entry, serverName } = props;
  const {
    pending,
    errors,
    run: end
  } = useItemActions<IRemoteTerminal>(
    terminal => terminal.name,
    item => props.onEnd(item),
    error => describeEndError(error, serverName)
  );

  const now = props.now ?? Date.now() / 1000;
  const terminals = entry.value;
  const count = terminals.length;
  return (
    <div
      className="jp-ComputeServers-terminals"
      aria-label={`Terminals on ${serverName}`}
    >
      <div className="jp-ComputeServers-terminalsHeader">
        {entry.loaded
          ? count === 0
            ? 'No terminals'
            : `${count} terminal${count === 1 ? '' : 's'}`
          : entry.error
            ? 'Terminals'
            : 'Reading the terminals…'}
      </div>
      {entry.error && (
        <div className="jp-ComputeServers-terminalsError" role="alert">
          Could not read the terminals on {serverName}: {entry.error}{' '}
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
        <ul className="jp-ComputeServers-terminalList">
          {terminals.map(terminal => {
            const name = terminal.name;
            const started =
              typeof terminal.started === 'number' ? terminal.started : null;
            return (
              <li
                key={name}
                className="jp-ComputeServers-terminal"
                data-terminal-name={name}
              >
                <div className="jp-ComputeServers-kernelTitle">
                  <span
                    className="jp-ComputeServers-terminalName"
                    title={
                      `Terminal ${name} on ${serverName}` +
                      (terminal.cwd ? `\nStarted in ${terminal.cwd}` : '') +
                      (terminal.pid ? `\nProcess ${terminal.pid}` : '')
                    }
                  >
                    Terminal {name}
                  </span>
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
                    className="jp-ComputeServers-terminalOpen"
                    title={`Open terminal ${name} on ${serverName} in a tab`}
                    onClick={() => props.onOpen(terminal)}
                  >
                    Open
                  </button>
                  <button
                    type="button"
                    className="jp-ComputeServers-terminalEnd jp-ComputeServers-kernelShutdown jp-mod-warn"
                    title={`End the shell of terminal ${name} on ${serverName}`}
                    disabled={pending.has(name)}
                    onClick={() => end(terminal)}
                  >
                    {pending.has(name) ? 'Ending…' : 'End'}
                  </button>
                </div>
                {errors[name] && (
                  <div className="jp-ComputeServers-kernelError" role="alert">
                    Could not end terminal {name}: {errors[name]}
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
