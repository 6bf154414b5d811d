/**
 * JupyterLab notifications for what happens to compute servers without the user asking: a
 * cost warning (a spend limit or the monthly budget at 80%, or reached), an automatic stop
 * (spend limit, budget, daily stop, idle), a preemption (a spot VM taken back), a server that
 * ends soon (a Slurm job's time limit, 15 minutes before). Each comes
 * from one server event and is shown once (the same event heard twice is not shown twice),
 * with an action or two.
 */
import { Notification } from '@jupyterlab/apputils';
import { IComputeServersModel, IServerEvent, IServerEvents } from './tokens';

/** The event kinds that become notifications. */
export const NOTIFIED_KINDS = [
  'cost_warning',
  'auto_stopped',
  'preempted',
  'ending_soon'
];

/** What a notification's buttons do. */
export interface INotifierActions {
  /** Show the Compute Servers panel. */
  openPanel: () => void;
  /** Start a server again (after an idle or daily stop, or a preemption). */
  start?: (serverId: number) => void;
  /** Edit a server (its spend limit). */
  edit?: (serverId: number) => void;
}

/** One notification, as `notify` shows it (exported for tests). */
export interface IServerNotification {
  key: string;
  message: string;
  type: Notification.TypeOptions;
  actions: { label: string; caption: string; callback: () => void }[];
}

/** How long the same event heard again is taken for the one already shown. */
const REPEAT_AFTER_MS = 60 * 1000;

/** Automatic stops after which starting again is allowed at once. */
const RESTARTABLE_TRIGGERS = new Set(['idle', 'daily_stop']);

/**
 * Turns compute server events into notifications: what to say, of what type, with which
 * actions. Each is shown once: the same event heard again within a minute is dropped.
 */
export class ServerNotifier {
  constructor(options: ServerNotifier.IOptions) {
    this._servers = options.servers;
    this._events = options.events ?? null;
    this._actions = options.actions;
    this._notify = options.notify ?? showNotification;
    this._repeatAfter = options.repeatAfter ?? REPEAT_AFTER_MS;
    this._events?.stream.connect(this._onEvent, this);
  }

  /** Whether events become notifications (the `notifications` setting); default true. */
  enabled = true;

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._events?.stream.disconnect(this._onEvent, this);
  }

  /** The notification for an event, or null when it gives none (exported for tests). */
  describe(event: IServerEvent): IServerNotification | null {
    if (!NOTIFIED_KINDS.includes(event.kind)) {
      return null;
    }
    const kind = event.kind;
    const serverId = event.server_id;
    const name =
      serverId === null
        ? null
        : (this._servers.server(serverId)?.name ??
          `Compute server ${serverId}`);
    const text = (value: unknown) => (typeof value === 'string' ? value : '');
    const withName = (message: string) =>
      name && !message.includes(name) ? `${name}: ${message}` : message;
    const key = [
      kind,
      serverId ?? 'all',
      text(event.scope),
      String(event.threshold ?? ''),
      text(event.trigger),
      text(event.message) || text(event.state_reason)
    ].join('|');

    const openPanel = {
      label: 'Open panel',
      caption: 'Show the Compute Servers panel',
      callback: () => this._actions.openPanel()
    };
    const startAgain =
      serverId !== null && this._actions.start
        ? {
            label: 'Start again',
            caption: `Start ${name} again`,
            callback: () => this._actions.start?.(serverId)
          }
        : null;

    switch (kind) {
      case 'cost_warning': {
        const reached =
          typeof event.threshold === 'number' && event.threshold >= 1;
        const budget = event.scope === 'budget' || serverId === null;
        const actions = [openPanel];
        if (!budget && serverId !== null && this._actions.edit) {
          actions.push({
            label: 'Edit limit',
            caption: `Change ${name}'s spend limit`,
            callback: () => this._actions.edit?.(serverId)
          });
        }
        const fallback = budget
          ? 'The compute servers have used most of the monthly budget.'
          : 'This server has used most of its spend limit.';
        return {
          key,
          message: withName(text(event.message) || fallback),
          type: reached ? 'error' : 'warning',
          actions
        };
      }
      case 'auto_stopped': {
        const trigger = text(event.trigger);
        const actions = [openPanel];
        if (startAgain && RESTARTABLE_TRIGGERS.has(trigger)) {
          actions.unshift(startAgain);
        }
        return {
          key,
          message: withName(
            text(event.message) ||
              text(event.state_reason) ||
              'Stopped automatically.'
          ),
          type: 'warning',
          actions
        };
      }
      case 'preempted': {
        const actions = startAgain ? [startAgain, openPanel] : [openPanel];
        return {
          key,
          message: withName(
            text(event.state_reason) ||
              text(event.message) ||
              'The provider stopped it (a spot VM was taken back).'
          ),
          type: 'warning',
          actions
        };
      }
      case 'ending_soon': {
        return {
          key,
          message: withName(
            text(event.message) || 'It will be stopped soon: save your work.'
          ),
          type: 'warning',
          actions: [openPanel]
        };
      }
    }
    return null;
  }

  private _onEvent(_: IServerEvents, event: IServerEvent): void {
    const notification = this.enabled ? this.describe(event) : null;
    if (!notification) {
      return;
    }
    // The events carry no id: the same one heard again soon after is the same one.
    const now = Date.now();
    const last = this._shown.get(notification.key);
    if (last !== undefined && now - last < this._repeatAfter) {
      return;
    }
    for (const [key, at] of this._shown) {
      if (now - at >= this._repeatAfter) {
        this._shown.delete(key);
      }
    }
    this._shown.set(notification.key, now);
    this._notify(notification);
  }

  private _servers: IComputeServersModel;
  private _events: IServerEvents | null;
  private _actions: INotifierActions;
  private _notify: (notification: IServerNotification) => void;
  private _shown = new Map<string, number>();
  private _repeatAfter: number;
  private _isDisposed = false;
}

export namespace ServerNotifier {
  export interface IOptions {
    servers: IComputeServersModel;
    /** The server extension's events. */
    events?: IServerEvents | null;
    actions: INotifierActions;
    /** How to show one (default: a JupyterLab notification that stays until closed). */
    notify?: (notification: IServerNotification) => void;
    /** How long the same notification is not shown again, in ms (default a minute). */
    repeatAfter?: number;
  }
}

/** A JupyterLab notification that stays until closed (these matter). */
export function showNotification(notification: IServerNotification): string {
  return Notification.emit(notification.message, notification.type, {
    autoClose: false,
    actions: notification.actions.map(action => ({
      label: action.label,
      caption: action.caption,
      callback: action.callback
    }))
  });
}
