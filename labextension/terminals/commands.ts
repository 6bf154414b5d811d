import { JupyterFrontEnd } from '@jupyterlab/application';
import {
  Clipboard,
  Notification,
  showErrorMessage,
  WidgetTracker
} from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ITerminal } from '@jupyterlab/terminal';
import { ITranslator } from '@jupyterlab/translation';
import { terminalIcon } from '@jupyterlab/ui-components';
import { CommandRegistry } from '@lumino/commands';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { describeError } from '../servers/actions';
import { openCreateDialog } from '../servers/createDialog';
import { NEW_SERVER, pickServer } from '../servers/pickServer';
import { ensureRunning } from '../servers/running';
import { IServer } from '../servers/types';
import { IComputeServersModel, IServerTerminalsModel } from '../tokens';
import { showSSHAccess } from './sshAccess';
import { RemoteTerminalPanel } from './widget';

export namespace TerminalCommandIDs {
  /** A new shell on a server: `{serverId?}`; without, asks which (or to start or create one). */
  export const newTerminal = 'compute-servers:new-terminal';
  /** Show a server's terminal in a tab: `{serverId, name}` (the layout restorer uses it). */
  export const openTerminal = 'compute-servers:open-terminal';
  /** A running server's ssh config snippet: `{serverId?}`; without, asks which. */
  export const sshAccess = 'compute-servers:ssh-access';
  /** The compute server terminals' context menu. */
  export const copy = 'compute-servers:terminal-copy';
  export const paste = 'compute-servers:terminal-paste';
  export const refresh = 'compute-servers:terminal-refresh';
}

/** The terminal tabs' namespace in the layout restorer's state. */
export const TRACKER_NAMESPACE = 'compute-server-terminal';

/** JupyterLab's terminal settings, whose options compute server terminals follow. */
export const TERMINAL_SETTINGS_PLUGIN = '@jupyterlab/terminal-extension:plugin';

/**
 * Apply JupyterLab's terminal settings to an open terminal (as JupyterLab does to its own),
 * but for what differs for compute server terminals (see `remoteTerminalOptions`).
 */
export function applyTerminalSettings(
  panel: RemoteTerminalPanel,
  options: Partial<ITerminal.IOptions>
): void {
  for (const [key, value] of Object.entries(options) as [
    keyof ITerminal.IOptions,
    any
  ][]) {
    if (key === 'shutdownOnClose' || key === 'initialCommand') {
      continue;
    }
    panel.content.setOption(key, value);
  }
}

/** What the terminal commands work with. */
export interface ITerminalCommandsOptions {
  commands: CommandRegistry;
  shell: Pick<JupyterFrontEnd.IShell, 'add' | 'activateById' | 'currentWidget'>;
  servers: IComputeServersModel;
  terminals: IServerTerminalsModel;
  /** The page's connection settings. */
  serverSettings: ServerConnection.ISettings;
  /** The open compute server terminals. */
  tracker: WidgetTracker<RemoteTerminalPanel>;
  /** JupyterLab's terminal settings now (null until read, or when they cannot be). */
  terminalOptions?: () => Partial<ITerminal.IOptions> | null;
  translator?: ITranslator;
}

/**
 * The commands for terminals on compute servers, and SSH access:
 * - New Terminal (on a given server, or asking which, starting it if needed);
 * - open an existing terminal in a tab (or show the tab it is in);
 * - SSH access;
 * - Copy, Paste and Refresh for the terminals' context menu.
 */
export function addTerminalCommands(options: ITerminalCommandsOptions): void {
  const { commands, shell, servers, terminals, tracker } = options;

  const serverName = (id: number) => servers.server(id)?.name ?? `server ${id}`;

  /** Show a terminal's tab, opening it if it is not open. */
  const show = (
    server: Pick<IServer, 'id' | 'name'>,
    name: string,
    isNew: boolean
  ): RemoteTerminalPanel => {
    const open = tracker.find(
      p => p.serverId === server.id && p.terminalName === name
    );
    if (open) {
      shell.activateById(open.id);
      return open;
    }
    const panel = new RemoteTerminalPanel({
      serverId: server.id,
      serverName: server.name,
      name,
      isNew,
      serverSettings: options.serverSettings,
      terminalOptions: options.terminalOptions?.() ?? null,
      translator: options.translator,
      onShutdownError: error => {
        Notification.error(
          `Terminal ${name} on ${serverName(server.id)} may still run: ${describeError(
            error
          )} End it from the Compute Servers panel.`,
          { autoClose: false }
        );
      }
    });
    shell.add(panel, 'main', { type: 'Terminal' });
    void tracker.add(panel);
    shell.activateById(panel.id);
    return panel;
  };

  /** The server to open something on: the one asked for, or the one the user picks. */
  const chooseServer = async (
    args: ReadonlyPartialJSONObject,
    what: { title: string; purpose: string; accept: string }
  ): Promise<IServer | null> => {
    if (!servers.loaded) {
      await servers.refresh();
    }
    if (args['serverId'] !== undefined) {
      const server = servers.server(Number(args['serverId']));
      if (!server) {
        await showErrorMessage(
          what.title,
          `There is no compute server with id ${String(args['serverId'])}; it may have been deleted.`
        );
      }
      return server ?? null;
    }
    const choice = await pickServer(servers.servers, what);
    if (choice === null) {
      return null;
    }
    if (choice === NEW_SERVER) {
      return openCreateDialog(servers);
    }
    return servers.server(choice) ?? null;
  };

  commands.addCommand(TerminalCommandIDs.newTerminal, {
    label: args => {
      if (args['serverId'] !== undefined) {
        return `New Terminal on ${serverName(Number(args['serverId']))}`;
      }
      return args['isPalette']
        ? 'New Terminal on Compute Server…'
        : 'Terminal on Compute Server…';
    },
    caption: 'Start a shell on a compute server, in a terminal tab',
    icon: args => (args['isPalette'] ? undefined : terminalIcon),
    execute: async args => {
      const chosen = await chooseServer(args, {
        title: 'Terminal on Compute Server',
        purpose: 'the terminal',
        accept: 'Open Terminal'
      });
      if (!chosen) {
        return null;
      }
      let server: IServer;
      try {
        server = await ensureRunning(servers, chosen, 'for a terminal');
      } catch {
        return null; // the notification says why
      }
      try {
        const terminal = await terminals.create(server.id);
        return show(server, terminal.name, true);
      } catch (error) {
        await showErrorMessage(
          `Could not start a terminal on ${server.name}`,
          describeError(error)
        );
        return null;
      }
    }
  });

  commands.addCommand(TerminalCommandIDs.openTerminal, {
    label: args =>
      args['name']
        ? `Open Terminal ${String(args['name'])} on ${serverName(
            Number(args['serverId'])
          )}`
        : 'Open Terminal on Compute Server',
    caption: "Show a compute server's terminal in a tab",
    icon: terminalIcon,
    execute: async args => {
      const serverId = Number(args['serverId']);
      const name = String(args['name'] ?? '');
      const open = tracker.find(
        p => p.serverId === serverId && p.terminalName === name
      );
      if (open) {
        shell.activateById(open.id);
        return open;
      }
      // Only attach to a terminal that exists (a restored tab whose shell ended, or whose
      // server stopped, is not opened again).
      await terminals.refresh(serverId);
      const entry = terminals.entry(serverId);
      if (entry.error) {
        throw new Error(entry.error);
      }
      if (!entry.value.some(t => t.name === name)) {
        throw new Error(
          `There is no terminal ${name} on ${serverName(serverId)} any more.`
        );
      }
      if (!servers.loaded) {
        await servers.refresh();
      }
      return show({ id: serverId, name: serverName(serverId) }, name, false);
    }
  });

  commands.addCommand(TerminalCommandIDs.sshAccess, {
    label: args =>
      args['serverId'] !== undefined
        ? `SSH Access to ${serverName(Number(args['serverId']))}`
        : 'SSH Access to a Compute Server…',
    caption:
      'An ssh config snippet for a running compute server, for ssh, scp, rsync or an editor',
    execute: async args => {
      const chosen = await chooseServer(args, {
        title: 'SSH Access',
        purpose: 'its SSH access',
        accept: 'Show SSH Access'
      });
      if (!chosen) {
        return;
      }
      let server: IServer;
      try {
        server = await ensureRunning(servers, chosen, 'for SSH access');
      } catch {
        return;
      }
      await showSSHAccess(server, options.serverSettings);
    }
  });

  /** The terminal the context menu was opened on: the current one, if it is in focus. */
  const current = (): RemoteTerminalPanel | null => {
    const panel = tracker.currentWidget;
    return panel && panel === shell.currentWidget ? panel : null;
  };

  commands.addCommand(TerminalCommandIDs.copy, {
    label: 'Copy',
    caption: 'Copy the selected text',
    execute: () => {
      const panel = current();
      const text = panel?.content.getSelection();
      if (panel && text) {
        Clipboard.copyToSystem(text);
        panel.content.activate();
      }
    },
    isEnabled: () => !!current()?.content.hasSelection()
  });

  commands.addCommand(TerminalCommandIDs.paste, {
    label: 'Paste',
    caption: 'Paste the clipboard into the terminal',
    execute: async () => {
      const panel = current();
      if (!panel) {
        return;
      }
      const text = await navigator.clipboard.readText();
      if (text) {
        panel.content.paste(text);
        panel.content.activate();
      }
    },
    isEnabled: () => current() !== null
  });

  commands.addCommand(TerminalCommandIDs.refresh, {
    label: 'Refresh Terminal',
    caption: 'Attach to the shell again',
    execute: async () => {
      const panel = current();
      if (!panel) {
        return;
      }
      try {
        await panel.content.refresh();
        panel.content.activate();
      } catch (error) {
        await showErrorMessage(
          `Could not refresh terminal ${panel.terminalName} on ${panel.serverName}`,
          describeError(error)
        );
      }
    },
    isEnabled: () => current() !== null
  });

  // The tabs follow a renamed server.
  servers.changed.connect(() => {
    tracker.forEach(panel => {
      const server = servers.server(panel.serverId);
      if (server) {
        panel.serverName = server.name;
      }
    });
  });
}
