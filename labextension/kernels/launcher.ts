import { ILauncher } from '@jupyterlab/launcher';
import { KernelSpec } from '@jupyterlab/services';
import { CommandRegistry } from '@lumino/commands';
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';
import { DisposableSet, IDisposable } from '@lumino/disposable';

import { IconCache, launcherCardSvg } from './icons';
import { serverSpecs, specServer } from './specs';
import { ISpecServer } from './types';

export namespace LauncherCommandIDs {
  /** A notebook on a compute server's kernel: `{kernelName, cwd?}`. */
  export const newNotebook = 'compute-servers:new-notebook';
  /** A console on a compute server's kernel: `{kernelName, cwd?}`. */
  export const newConsole = 'compute-servers:new-console';
}

/** JupyterLab's own commands, which ours call and whose launcher items ours replace. */
export const CORE_COMMANDS = {
  notebook: 'notebook:create-new',
  console: 'console:create'
} as const;

/** Where the compute servers' sections go: after Notebook (0) and Console (20), before Other (100). */
export const SECTION_RANK = 50;

/** The launcher section of a compute server's kernels. */
export function sectionName(server: { name: string }): string {
  return `Compute server: ${server.name}`;
}

/**
 * Whether a launcher item is one of JupyterLab's own Notebook or Console items for a compute
 * server's kernel spec (which the server's own section replaces).
 */
export function isCoreServerItem(item: ILauncher.IItemOptions): boolean {
  if (
    item.command !== CORE_COMMANDS.notebook &&
    item.command !== CORE_COMMANDS.console
  ) {
    return false;
  }
  const kernel = (item.metadata as Record<string, any> | undefined)?.kernel;
  return !!kernel && typeof kernel === 'object' && !!kernel.compute_server;
}

type Kind = keyof typeof CORE_COMMANDS;

/**
 * The commands the launcher's compute server cards run: a notebook or a console on a kernel of a
 * compute server, through JupyterLab's own commands, labelled and drawn with the server's badge.
 */
export function addLauncherCommands(
  commands: CommandRegistry,
  specs: KernelSpec.IManager
): IDisposable {
  const icons = new IconCache('jupyter-compute-servers:launcher');
  const disposables = new DisposableSet();
  const server = (args: ReadonlyPartialJSONObject): ISpecServer | null =>
    specServer(specs.specs?.kernelspecs[String(args['kernelName'] ?? '')]);

  const add = (id: string, kind: Kind) => {
    const noun = kind === 'notebook' ? 'Notebook' : 'Console';
    disposables.add(
      commands.addCommand(id, {
        label: args => {
          const found = server(args);
          return found ? `${found.kernel_display_name} ${noun}` : noun;
        },
        caption: args => {
          const name = String(args['kernelName'] ?? '');
          const spec = specs.specs?.kernelspecs[name];
          return spec && specServer(spec)
            ? `New ${kind} with ${spec.display_name}. The compute server starts first if it is off.`
            : `New ${kind} on a compute server`;
        },
        icon: args => {
          const found = server(args);
          return found
            ? icons.get(`${found.id}-${kind}`, launcherCardSvg(kind, found))
            : undefined;
        },
        isEnabled: args => !!server(args),
        execute: args => {
          const kernelName = String(args['kernelName'] ?? '');
          const cwd = args['cwd'];
          if (kind === 'notebook') {
            return commands.execute(CORE_COMMANDS.notebook, {
              kernelName,
              ...(cwd !== undefined ? { cwd } : {})
            });
          }
          return commands.execute(CORE_COMMANDS.console, {
            kernelPreference: { name: kernelName },
            ...(cwd !== undefined ? { cwd } : {})
          });
        }
      })
    );
  };
  add(LauncherCommandIDs.newNotebook, 'notebook');
  add(LauncherCommandIDs.newConsole, 'console');
  return disposables;
}

/**
 * Groups the launcher's kernels by compute server: a section per server ("Compute server:
 * gpu-box") with a Notebook and a Console card for each of its kernels, drawn with its badge,
 * kept in step with the kernel specs.
 *
 * JupyterLab's Notebook and Console sections list every kernel spec, remote ones too, and offer
 * no way to leave some out, so while grouping is on the launcher model's `items()` is wrapped
 * to hide JupyterLab's own items for compute server kernels (they are recognised by their
 * `metadata.kernel.compute_server`). Turning grouping off (`enabled = false`) puts the model
 * back as it was.
 */
export class ServerLauncherSections implements IDisposable {
  constructor(options: ServerLauncherSections.IOptions) {
    this._launcher = options.launcher;
    this._specs = options.specs;
    this._commands = options.commands;
    this._specs.specsChanged.connect(this._update, this);
    this._commands.commandChanged.connect(this._onCommandChanged, this);
    this.enabled = options.enabled ?? true;
  }

  /** Whether the compute servers' kernels have sections of their own. */
  get enabled(): boolean {
    return this._enabled;
  }

  set enabled(value: boolean) {
    this._enabled = value;
    if (value) {
      this._hideCoreItems();
    } else {
      this._showCoreItems();
    }
    this._update();
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._specs.specsChanged.disconnect(this._update, this);
    this._commands.commandChanged.disconnect(this._onCommandChanged, this);
    this._showCoreItems();
    this._items.dispose();
  }

  private _onCommandChanged(
    _: CommandRegistry,
    change: CommandRegistry.ICommandChangedArgs
  ): void {
    // JupyterLab's notebook and console commands may be added after us.
    if (
      change.type !== 'changed' &&
      (change.id === CORE_COMMANDS.notebook ||
        change.id === CORE_COMMANDS.console)
    ) {
      this._update();
    }
  }

  /** Replace our items with one Notebook and one Console item per compute server kernel. */
  private _update(): void {
    if (this._isDisposed) {
      return;
    }
    this._items.dispose();
    this._items = new DisposableSet();
    if (!this._enabled) {
      return;
    }
    for (const { spec, server } of serverSpecs(this._specs.specs)) {
      const kinds: [Kind, string, number][] = [
        ['notebook', LauncherCommandIDs.newNotebook, 0],
        ['console', LauncherCommandIDs.newConsole, 1]
      ];
      for (const [kind, command, rank] of kinds) {
        if (!this._commands.hasCommand(CORE_COMMANDS[kind])) {
          continue;
        }
        this._items.add(
          this._launcher.add({
            command,
            args: { isLauncher: true, kernelName: spec.name },
            category: sectionName(server),
            categoryRank: SECTION_RANK,
            rank,
            metadata: { compute_server: { ...server } }
          })
        );
      }
    }
  }

  private _hideCoreItems(): void {
    const model = this._launcher as ILauncher.IModel;
    if (this._originalItems || typeof model.items !== 'function') {
      return;
    }
    const original = model.items;
    this._originalItems = original;
    this._filteredItems = function* () {
      for (const item of original.call(model)) {
        if (!isCoreServerItem(item)) {
          yield item;
        }
      }
    };
    model.items = this._filteredItems;
  }

  private _showCoreItems(): void {
    const model = this._launcher as ILauncher.IModel;
    // Put the original back only if nobody wrapped ours since.
    if (this._originalItems && model.items === this._filteredItems) {
      model.items = this._originalItems;
    }
    this._originalItems = null;
    this._filteredItems = null;
  }

  private _launcher: ILauncher;
  private _specs: KernelSpec.IManager;
  private _commands: CommandRegistry;
  private _enabled = false;
  private _items = new DisposableSet();
  private _originalItems: ILauncher.IModel['items'] | null = null;
  private _filteredItems: ILauncher.IModel['items'] | null = null;
  private _isDisposed = false;
}

export namespace ServerLauncherSections {
  export interface IOptions {
    launcher: ILauncher;
    /** The page's kernel specs (`app.serviceManager.kernelspecs`). */
    specs: KernelSpec.IManager;
    commands: CommandRegistry;
    /** Group by server at once (default true). */
    enabled?: boolean;
  }
}
