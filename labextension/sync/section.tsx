import * as React from 'react';

import { IServer, ISidebarSection, ISyncModel, SyncDirection } from '../tokens';
import { ServerSync, SyncButton } from './view';

/**
 * Every server's Sync button (with its menu: directions and sync settings), and a running
 * server's sync progress and summary, in the Compute Servers panel.
 */
export class SyncSection implements ISidebarSection {
  constructor(options: SyncSection.IOptions) {
    this._sync = options.sync;
    this._options = options;
  }

  /** The first button of a row, and the first thing under a running server. */
  readonly rank = 10;

  get changed(): ISyncModel['changed'] {
    return this._sync.changed;
  }

  setWatched(watched: boolean): void {
    this._sync.watched = watched;
  }

  renderActions(server: IServer, pending: boolean): React.ReactNode {
    const { onSync, onSyncSettings } = this._options;
    if (!onSync && !onSyncSettings) {
      return null;
    }
    return (
      <SyncButton
        serverName={server.name}
        // A workspace mounted only is never synced (the API refuses, saying so).
        running={
          server.state === 'running' &&
          !!onSync &&
          server.workspace?.mode !== 'mounted'
        }
        busy={pending || this._sync.entry(server.id).value.running !== null}
        onSync={direction => onSync?.(server, direction)}
        onSettings={onSyncSettings ? () => onSyncSettings(server) : undefined}
      />
    );
  }

  renderDetails(server: IServer): React.ReactNode {
    const sync = this._sync;
    return (
      <ServerSync
        serverName={server.name}
        entry={sync.entry(server.id)}
        actionError={sync.actionError(server.id)}
        onCancel={run => {
          void sync.cancel(server.id, run.id).catch(() => undefined);
        }}
        onOpenFile={this._options.onOpenFile}
      />
    );
  }

  private _sync: ISyncModel;
  private _options: SyncSection.IOptions;
}

export namespace SyncSection {
  export interface IOptions {
    sync: ISyncModel;
    /** Called by a running server's Sync button and its direction menu. */
    onSync?: (server: IServer, direction: SyncDirection) => void;
    /** Called by the Sync menu's "Sync settings…". */
    onSyncSettings?: (server: IServer) => void;
    /** Open a file of the Jupyter root (a sync conflict's two versions). */
    onOpenFile?: (path: string) => void;
  }
}
