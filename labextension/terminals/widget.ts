import { MainAreaWidget } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ITerminal, Terminal } from '@jupyterlab/terminal';
import { ITranslator } from '@jupyterlab/translation';
import { terminalIcon } from '@jupyterlab/ui-components';

import { RemoteTerminalConnection } from './connection';

/** The class of a compute server terminal's content, instead of JupyterLab's `jp-Terminal`. */
export const REMOTE_TERMINAL_CLASS = 'jp-ComputeServers-remoteTerminal';

/** A terminal tab's title: which terminal, and on which server. */
export function remoteTerminalLabel(name: string, serverName: string): string {
  return `Terminal ${name} on ${serverName}`;
}

/**
 * The options a compute server terminal gets from JupyterLab's terminal settings
 * (`@jupyterlab/terminal-extension:plugin`), with what differs for them:
 * - closing the tab always ends the shell (it would otherwise keep running, unseen, on the
 *   server: the sidebar lists it, but a local terminal's shell is never out of sight like
 *   that);
 * - the initial command runs only in a new shell, never again when attaching to one.
 */
export function remoteTerminalOptions(
  settings: Partial<ITerminal.IOptions> | null | undefined,
  isNew: boolean
): Partial<ITerminal.IOptions> {
  const options: Partial<ITerminal.IOptions> = { ...(settings ?? {}) };
  options.shutdownOnClose = true;
  if (!isNew) {
    options.initialCommand = '';
  }
  return options;
}

/**
 * A tab with JupyterLab's own Terminal widget attached to a shell on a compute server: the
 * same rendering, themes, fonts, copy and paste as any Lab terminal, its title naming the
 * server ("Terminal 1 on gpu-box"). Closing it ends the shell.
 *
 * The content's `jp-Terminal` class is swapped for `jp-ComputeServers-remoteTerminal`: JupyterLab's
 * terminal context menu (Copy, Paste, Refresh) matches `.jp-Terminal` but acts on its own
 * terminals only, and would show disabled; this extension adds the same items for these.
 */
export class RemoteTerminalPanel extends MainAreaWidget<Terminal> {
  constructor(options: RemoteTerminalPanel.IOptions) {
    const session = new RemoteTerminalConnection({
      serverId: options.serverId,
      name: options.name,
      serverSettings: options.serverSettings,
      onShutdownError: options.onShutdownError
    });
    const content = new Terminal(
      session,
      remoteTerminalOptions(options.terminalOptions, options.isNew ?? false),
      options.translator
    );
    content.removeClass('jp-Terminal');
    content.addClass(REMOTE_TERMINAL_CLASS);
    super({ content, reveal: content.ready });
    this.serverId = options.serverId;
    this.terminalName = options.name;
    this.addClass('jp-ComputeServers-terminalPanel');
    this.node.dataset.serverId = String(options.serverId);
    this.node.dataset.terminalName = options.name;
    this._serverName = options.serverName;
    content.title.icon = terminalIcon;
    content.title.changed.connect(this._onTitleChanged, this);
    this._onTitleChanged();
  }

  /** The compute server the shell runs on. */
  readonly serverId: number;
  /** The terminal's name on that server. */
  readonly terminalName: string;

  /** The server's name, as the title shows it (follows a rename). */
  get serverName(): string {
    return this._serverName;
  }

  set serverName(value: string) {
    if (value !== this._serverName) {
      this._serverName = value;
      this._onTitleChanged();
    }
  }

  /**
   * Keep the title on "Terminal 1 on gpu-box": the Terminal widget names itself ("Terminal
   * 1") when it connects, and after the shell's own title, which goes to the caption.
   */
  private _onTitleChanged(): void {
    const title = this.content.title;
    const label = remoteTerminalLabel(this.terminalName, this._serverName);
    if (title.label !== label) {
      const shellTitle = title.label;
      if (
        shellTitle &&
        shellTitle !== '...' &&
        !/^Terminal\b/.test(shellTitle)
      ) {
        this._shellTitle = shellTitle;
      }
      title.label = label;
    }
    const caption =
      `A shell on the compute server ${this._serverName}` +
      (this._shellTitle ? `\n${this._shellTitle}` : '');
    if (title.caption !== caption) {
      title.caption = caption;
    }
  }

  private _serverName: string;
  private _shellTitle = '';
}

export namespace RemoteTerminalPanel {
  export interface IOptions {
    serverId: number;
    /** The server's name, for the title. */
    serverName: string;
    /** The terminal's name on the server (it must exist). */
    name: string;
    /** Whether the shell was just started (its initial command runs, if any). */
    isNew?: boolean;
    /** The page's connection settings. */
    serverSettings?: ServerConnection.ISettings;
    /** JupyterLab's terminal settings, as their composite. */
    terminalOptions?: Partial<ITerminal.IOptions> | null;
    translator?: ITranslator;
    /** Told when closing the tab could not end the shell. */
    onShutdownError?: (error: unknown) => void;
  }
}
