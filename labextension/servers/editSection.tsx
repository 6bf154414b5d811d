import * as React from 'react';

import { IServer, ISidebarSection } from '../tokens';

/** Every server's Edit button, the last of its row in the Compute Servers panel. */
export class EditSection implements ISidebarSection {
  /** `onEdit`: called by a server's Edit button. */
  constructor(private readonly _onEdit: (server: IServer) => void) {}

  readonly rank = 100;

  renderActions(server: IServer, pending: boolean): React.ReactNode {
    return (
      <button
        type="button"
        className="jp-ComputeServers-action jp-ComputeServers-editButton"
        data-tool="edit"
        title={`Edit ${server.name}: name, image and hardware, spend limit, idle timeout, daily stop`}
        disabled={pending}
        onClick={() => this._onEdit(server)}
      >
        Edit
      </button>
    );
  }
}
