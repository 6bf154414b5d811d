import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IThemeManager,
  WidgetTracker
} from '@jupyterlab/apputils';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ITerminal } from '@jupyterlab/terminal';
import { ITranslator } from '@jupyterlab/translation';

import { ServerDetailsLiveUpdates } from '../servers/details';
import {
  addTerminalCommands,
  applyTerminalSettings,
  TERMINAL_SETTINGS_PLUGIN,
  TerminalCommandIDs,
  TRACKER_NAMESPACE
} from '../terminals/commands';
import { ServerTerminalsModel } from '../terminals/model';
import { RemoteTerminalPanel } from '../terminals/widget';
import {
  IComputeServersModel,
  IComputeServersSidebar,
  IServerEvents,
  IServerTerminalsModel
} from '../tokens';
import { PALETTE_CATEGORY } from './commands';
import { followSetting } from './servers';
import { TerminalsSection } from '../terminals/section';

/**
 * Terminals on compute servers: JupyterLab's Terminal widget on a shell held on the server,
 * opened from File > New ("Terminal on Compute Server…", its menu item is in
 * schema/terminals.json), the palette and the sidebar; restored on reload; SSH access.
 */
export const terminalsPlugin: JupyterFrontEndPlugin<IServerTerminalsModel> = {
  id: 'jupyter-compute-servers:terminals',
  description:
    'Terminals on compute servers, their list per server, and SSH access.',
  autoStart: true,
  provides: IServerTerminalsModel,
  requires: [IServerEvents, IComputeServersModel],
  optional: [
    ICommandPalette,
    ILayoutRestorer,
    ISettingRegistry,
    IThemeManager,
    ITranslator,
    IComputeServersSidebar
  ],
  activate: (
    app: JupyterFrontEnd,
    events: IServerEvents,
    servers: IComputeServersModel,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    settingRegistry: ISettingRegistry | null,
    themeManager: IThemeManager | null,
    translator: ITranslator | null,
    sidebar: IComputeServersSidebar | null
  ): IServerTerminalsModel => {
    const serverSettings = app.serviceManager.serverSettings;
    const terminals = new ServerTerminalsModel(serverSettings);
    const live = new ServerDetailsLiveUpdates({
      model: terminals,
      servers,
      events,
      kind: 'terminals',
      interval: 30 * 1000,
      name: 'jupyter-compute-servers:terminals'
    });
    followSetting(settingRegistry, 'refreshInterval', seconds => {
      if (typeof seconds === 'number' && seconds > 0) {
        live.interval = seconds * 1000;
      }
    });

    const tracker = new WidgetTracker<RemoteTerminalPanel>({
      namespace: TRACKER_NAMESPACE
    });
    let terminalOptions: Partial<ITerminal.IOptions> | null = null;
    addTerminalCommands({
      commands: app.commands,
      shell: app.shell,
      servers,
      terminals,
      serverSettings,
      tracker,
      terminalOptions: () => terminalOptions,
      translator: translator ?? undefined
    });

    // Fonts, theme, scrollback and the rest as in JupyterLab's own terminals.
    if (settingRegistry) {
      settingRegistry
        .load(TERMINAL_SETTINGS_PLUGIN)
        .then(settings => {
          const apply = () => {
            terminalOptions = settings.composite as Partial<ITerminal.IOptions>;
            tracker.forEach(panel =>
              applyTerminalSettings(panel, terminalOptions!)
            );
          };
          apply();
          settings.changed.connect(apply);
        })
        .catch(reason => {
          console.warn(
            'Compute server terminals use the default terminal settings:',
            reason
          );
        });
    }
    // A terminal on the "inherit" theme follows JupyterLab's theme.
    themeManager?.themeChanged.connect(() => {
      tracker.forEach(panel => {
        if (panel.content.getOption('theme') === 'inherit') {
          panel.content.setOption('theme', 'inherit');
        }
      });
    });

    if (restorer) {
      void restorer.restore(tracker, {
        command: TerminalCommandIDs.openTerminal,
        args: panel => ({
          serverId: panel.serverId,
          name: panel.terminalName
        }),
        name: panel => `${panel.serverId}:${panel.terminalName}`
      });
    }

    if (palette) {
      palette.addItem({
        command: TerminalCommandIDs.newTerminal,
        category: PALETTE_CATEGORY,
        args: { isPalette: true }
      });
      palette.addItem({
        command: TerminalCommandIDs.sshAccess,
        category: PALETTE_CATEGORY,
        args: { isPalette: true }
      });
    }
    const { commands } = app;
    sidebar?.addSection(
      new TerminalsSection({
        terminals,
        onNewTerminal: server =>
          void commands.execute(TerminalCommandIDs.newTerminal, {
            serverId: server.id
          }),
        onOpenTerminal: (server, name) =>
          void commands
            .execute(TerminalCommandIDs.openTerminal, {
              serverId: server.id,
              name
            })
            .catch(reason => {
              console.warn(`Could not open terminal ${name}.`, reason);
              void terminals.refresh(server.id);
            }),
        onSSHAccess: server =>
          void commands.execute(TerminalCommandIDs.sshAccess, {
            serverId: server.id
          })
      })
    );
    return terminals;
  }
};
