import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';

import { computeServerIcon } from '../icons';
import { openCreateDialog } from '../servers/createDialog';
import { openEditDialog } from '../servers/editDialog';
import { IComputeServersModel, IComputeServersSidebar } from '../tokens';
import { EditSection } from '../servers/editSection';

export namespace CommandIDs {
  export const create = 'compute-servers:create';
  export const refresh = 'compute-servers:refresh';
  export const edit = 'compute-servers:edit';
}

/** The palette's category for every command of this extension. */
export const PALETTE_CATEGORY = 'Compute Servers';

/** Commands: new compute server, edit one, refresh the list. */
export const commandsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-compute-servers:commands',
  description: 'Commands to create, edit and refresh compute servers.',
  autoStart: true,
  requires: [IComputeServersModel],
  optional: [ICommandPalette, IComputeServersSidebar],
  activate: (
    app: JupyterFrontEnd,
    model: IComputeServersModel,
    palette: ICommandPalette | null,
    sidebar: IComputeServersSidebar | null
  ): void => {
    app.commands.addCommand(CommandIDs.create, {
      label: 'New Compute Server',
      caption: 'Create a compute server: pick its cloud, image and hardware',
      icon: args => (args['isPalette'] ? undefined : computeServerIcon),
      execute: () => openCreateDialog(model)
    });
    app.commands.addCommand(CommandIDs.edit, {
      label: args =>
        args['serverId'] === undefined
          ? 'Edit Compute Server…'
          : `Edit ${model.server(Number(args['serverId']))?.name ?? 'Compute Server'}…`,
      caption:
        'Edit a compute server: name, image and hardware, spend limit, idle timeout, daily stop',
      isEnabled: args => model.server(Number(args['serverId'])) !== undefined,
      execute: args => {
        const server = model.server(Number(args['serverId']));
        return server ? openEditDialog(model, server) : null;
      }
    });
    app.commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Compute Servers',
      caption: 'Re-read the compute servers list now',
      execute: () => model.refresh()
    });
    if (palette) {
      for (const command of [CommandIDs.create, CommandIDs.refresh]) {
        palette.addItem({
          command,
          category: PALETTE_CATEGORY,
          args: { isPalette: true }
        });
      }
    }
    sidebar?.addSection(
      new EditSection(
        server =>
          void app.commands.execute(CommandIDs.edit, { serverId: server.id })
      )
    );
  }
};
