import * as React from 'react';

import { IServer, IServerTerminalsModel, ISidebarSection } from '../tokens';
import { ServerTerminals } from './list';

/**
 * A running server's Terminal and SSH access buttons and its terminals, in the Compute Servers
 * panel.
 */
export class TerminalsSection implements ISidebarSection {
  constructor(options: TerminalsSection.IOptions) {
    this._terminals = options.terminals;
    this._options = options;
  }

  /** Buttons after Sync, before Edit; terminals after the kernels. */
  readonly rank = 40;

  get changed(): IServerTerminalsModel['changed'] {
    return this._terminals.changed;
  }

  setWatched(watched: boolean): void {
    this._terminals.watched = watched;
  }

  renderActions(server: IServer, pending: boolean): React.ReactNode {
    const { onNewTerminal, onSSHAccess } = this._options;
    if (server.state !== 'running' || (!onNewTerminal && !onSSHAccess)) {
      return null;
    }
    return (
      <>
        {onNewTerminal && (
          <button
            type="button"
            className="jp-ComputeServers-action jp-ComputeServers-newTerminal"
            data-tool="terminal"
            title={`Open a new terminal on ${server.name}`}
            disabled={pending}
            onClick={() => onNewTerminal(server)}
          >
            Terminal
          </button>
        )}
        {onSSHAccess && (
          <button
            type="button"
            className="jp-ComputeServers-action jp-ComputeServers-sshAccessButton"
            data-tool="ssh-access"
            title={`An ssh config snippet for ${server.name}, for ssh, scp, rsync or an editor`}
            disabled={pending}
            onClick={() => onSSHAccess(server)}
          >
            SSH access
          </button>
        )}
      </>
    );
  }

  renderDetails(server: IServer): React.ReactNode {
    const terminals = this._terminals;
    const onOpen = this._options.onOpenTerminal;
    return (
      <ServerTerminals
        serverName={server.name}
        entry={terminals.entry(server.id)}
        onOpen={terminal => onOpen?.(server, terminal.name)}
        onEnd={terminal => terminals.shutdown(server.id, terminal.name)}
        onRetry={() => void terminals.refresh(server.id)}
      />
    );
  }

  private _terminals: IServerTerminalsModel;
  private _options: TerminalsSection.IOptions;
}

export namespace TerminalsSection {
  export interface IOptions {
    terminals: IServerTerminalsModel;
    /** Called by a running server's Terminal button (without, there is none). */
    onNewTerminal?: (server: IServer) => void;
    /** Called by a listed terminal's Open button. */
    onOpenTerminal?: (server: IServer, name: string) => void;
    /** Called by a running server's SSH access button (without, there is none). */
    onSSHAccess?: (server: IServer) => void;
  }
}
