import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection, Terminal } from '@jupyterlab/services';
import { ISignal, Signal } from '@lumino/signaling';

import { API_NAMESPACE, ApiError, requestAPI } from '../request';
import { terminalsEndPoint } from './model';
import { IRemoteTerminal } from './types';

/**
 * The connection settings of a compute server's terminals: the page's, with the websocket base
 * moved to the server's API, so that `${wsUrl}terminals/websocket/${name}` (where JupyterLab
 * attaches its terminals) is `compute-servers/api/servers/${id}/terminals/websocket/${name}`.
 */
export function remoteTerminalSettings(
  settings: ServerConnection.ISettings,
  serverId: number
): ServerConnection.ISettings {
  return {
    ...settings,
    wsUrl: URLExt.join(
      settings.wsUrl,
      API_NAMESPACE,
      'servers',
      String(serverId),
      '/'
    )
  };
}

/** The websocket URL of a compute server's terminal (without the token). */
export function terminalWebSocketUrl(
  settings: ServerConnection.ISettings,
  serverId: number,
  name: string
): string {
  return URLExt.join(
    remoteTerminalSettings(settings, serverId).wsUrl,
    'terminals',
    'websocket',
    encodeURIComponent(name)
  );
}

/**
 * JupyterLab's terminal REST client, for a compute server's terminals: start, list and end
 * shells through `compute-servers/api/servers/{id}/terminals`.
 */
export class RemoteTerminalAPIClient implements Terminal.ITerminalAPIClient {
  constructor(
    readonly serverId: number,
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** Compute servers' terminals do not depend on Jupyter's own terminals being enabled. */
  get isAvailable(): boolean {
    return true;
  }

  async startNew(
    options: Terminal.ITerminal.IOptions = {}
  ): Promise<Terminal.IModel> {
    const body: Record<string, string> = {};
    if (options.name) {
      body.name = options.name;
    }
    if (options.cwd) {
      body.cwd = options.cwd;
    }
    const terminal = await requestAPI<IRemoteTerminal>(
      terminalsEndPoint(this.serverId),
      { method: 'POST', body },
      this.serverSettings
    );
    return { name: terminal.name };
  }

  async listRunning(): Promise<Terminal.IModel[]> {
    const data = await requestAPI<{ terminals: IRemoteTerminal[] }>(
      terminalsEndPoint(this.serverId),
      {},
      this.serverSettings
    );
    return data.terminals.map(t => ({ name: t.name }));
  }

  /** End the shell; one that has already ended (404) is not an error. */
  async shutdown(name: string): Promise<void> {
    try {
      await requestAPI(
        terminalsEndPoint(this.serverId, name),
        { method: 'DELETE' },
        this.serverSettings
      );
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) {
        throw error;
      }
    }
  }
}

/** How long to wait before each attempt to attach again, in ms; then it gives up. */
const RECONNECT_DELAYS = [250, 1000, 2000, 4000, 8000, 15000, 30000];

/** Resets the screen (ESC c): sent to the widget before the output replayed on reattaching. */
export const RESET_SCREEN = '\x1bc';

/**
 * A connection to a shell on a compute server, for JupyterLab's Terminal widget: terminado's
 * messages over `compute-servers/api/servers/{id}/terminals/websocket/{name}`.
 *
 * Like JupyterLab's own terminal connection, it queues what is sent while it is not
 * connected, closes (`dispose`) when the shell ends (`["disconnect", 1]`), and attaches again
 * after the websocket drops. The server replays the shell's recent output on every attach, so
 * on attaching again the screen is reset first, to show that output once. Before each new
 * attempt it asks whether the terminal still exists: one that ended meanwhile (or whose server
 * stopped) closes instead of retrying.
 */
export class RemoteTerminalConnection implements Terminal.ITerminalConnection {
  constructor(options: RemoteTerminalConnection.IOptions) {
    this.serverId = options.serverId;
    this._name = options.name;
    this.serverSettings = remoteTerminalSettings(
      options.serverSettings ?? ServerConnection.makeSettings(),
      options.serverId
    );
    this._client =
      options.client ??
      new RemoteTerminalAPIClient(
        options.serverId,
        options.serverSettings ?? ServerConnection.makeSettings()
      );
    this._onShutdownError = options.onShutdownError ?? null;
    this._createSocket();
  }

  /** The compute server the shell runs on. */
  readonly serverId: number;
  /** The page's settings with the websocket base on the server's API. */
  readonly serverSettings: ServerConnection.ISettings;

  get name(): string {
    return this._name;
  }

  get model(): Terminal.IModel {
    return { name: this._name };
  }

  get messageReceived(): ISignal<this, Terminal.IMessage> {
    return this._messageReceived;
  }

  get connectionStatus(): Terminal.ConnectionStatus {
    return this._status;
  }

  get connectionStatusChanged(): ISignal<this, Terminal.ConnectionStatus> {
    return this._statusChanged;
  }

  get disposed(): ISignal<this, void> {
    return this._disposed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Send a message to the shell; queued while not connected. */
  send(message: Terminal.IMessage): void {
    if (this._isDisposed || !message.content) {
      return;
    }
    if (this._status === 'connected' && this._ws) {
      this._ws.send(JSON.stringify([message.type, ...message.content]));
    } else {
      this._pending.push(message);
    }
  }

  /** Attach again now; resolves once attached, rejects if it cannot be. */
  reconnect(): Promise<void> {
    this._errorIfDisposed();
    return new Promise<void>((resolve, reject) => {
      const settle = (_: this, status: Terminal.ConnectionStatus) => {
        if (status === 'connected') {
          this._statusChanged.disconnect(settle);
          resolve();
        } else if (status === 'disconnected') {
          this._statusChanged.disconnect(settle);
          reject(new Error('Terminal connection disconnected'));
        }
      };
      this._statusChanged.connect(settle);
      this._attempt = 0;
      this._createSocket();
    });
  }

  /** End the shell on the server (DELETE), then close. A failure is passed on. */
  async shutdown(): Promise<void> {
    try {
      await this._client.shutdown(this._name);
    } catch (error) {
      this._onShutdownError?.(error);
      throw error;
    }
    this.dispose();
  }

  /** Another connection to the same shell. */
  clone(): RemoteTerminalConnection {
    return new RemoteTerminalConnection({
      serverId: this.serverId,
      name: this._name,
      serverSettings: this._client.serverSettings,
      client: this._client,
      onShutdownError: this._onShutdownError ?? undefined
    });
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._disposed.emit();
    this._setStatus('disconnected');
    this._clearSocket();
    Signal.clearData(this);
  }

  private _createSocket(): void {
    this._clearSocket();
    this._setStatus('connecting');
    const settings = this.serverSettings;
    let url = URLExt.join(
      settings.wsUrl,
      'terminals',
      'websocket',
      encodeURIComponent(this._name)
    );
    if (settings.appendToken && settings.token !== '') {
      url += `?token=${encodeURIComponent(settings.token)}`;
    }
    const ws = new settings.WebSocket(url);
    this._ws = ws;
    ws.onmessage = (event: MessageEvent) => this._onMessage(ws, event);
    ws.onclose = (event: CloseEvent) => this._onClose(ws, event);
    ws.onerror = () => undefined; // a close follows
  }

  private _onMessage(ws: WebSocket, event: MessageEvent): void {
    if (this._isDisposed || ws !== this._ws) {
      return;
    }
    let data: unknown;
    try {
      data = JSON.parse(String(event.data));
    } catch {
      return;
    }
    if (!Array.isArray(data) || typeof data[0] !== 'string') {
      return;
    }
    if (data[0] === 'disconnect') {
      this.dispose();
      return;
    }
    if (this._status === 'connecting') {
      if (data[0] === 'setup') {
        this._attempt = 0;
        if (this._attached) {
          this._messageReceived.emit({
            type: 'stdout',
            content: [RESET_SCREEN]
          });
        }
        this._attached = true;
        this._setStatus('connected');
        this._sendPending();
      }
      return;
    }
    this._messageReceived.emit({
      type: data[0] as Terminal.MessageType,
      content: data.slice(1)
    });
  }

  private _onClose(ws: WebSocket, event: CloseEvent): void {
    if (this._isDisposed || ws !== this._ws) {
      return;
    }
    this._ws = null;
    if (event.code === 1000 || event.code === 1001) {
      // Closed on purpose (by the server going down cleanly, or the page unloading).
      this._setStatus('disconnected');
      return;
    }
    this._scheduleReconnect();
  }

  private _scheduleReconnect(): void {
    if (this._attempt >= RECONNECT_DELAYS.length) {
      this._setStatus('disconnected');
      return;
    }
    this._setStatus('connecting');
    const delay = RECONNECT_DELAYS[this._attempt++];
    clearTimeout(this._timer);
    this._timer = setTimeout(() => void this._retry(), delay);
  }

  /** Attach again if the shell still exists; close if it ended meanwhile. */
  private async _retry(): Promise<void> {
    if (this._isDisposed) {
      return;
    }
    let exists = true;
    try {
      const running = await this._client.listRunning();
      exists = running.some(t => t.name === this._name);
    } catch (error) {
      // 404 (the server is gone) or 409 (it is not running): so is the shell. Anything else
      // (the Jupyter server restarting, the network): try again later.
      if (
        error instanceof ApiError &&
        (error.status === 404 || error.status === 409)
      ) {
        exists = false;
      } else {
        this._scheduleReconnect();
        return;
      }
    }
    if (this._isDisposed) {
      return;
    }
    if (!exists) {
      this._messageReceived.emit({ type: 'disconnect', content: [1] });
      this.dispose();
      return;
    }
    this._createSocket();
  }

  private _sendPending(): void {
    while (
      this._status === 'connected' &&
      this._ws &&
      this._pending.length > 0
    ) {
      const message = this._pending.shift()!;
      this._ws.send(JSON.stringify([message.type, ...message.content!]));
    }
  }

  private _setStatus(status: Terminal.ConnectionStatus): void {
    if (status === this._status) {
      return;
    }
    this._status = status;
    if (status !== 'connecting') {
      clearTimeout(this._timer);
    }
    this._statusChanged.emit(status);
  }

  private _clearSocket(): void {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onerror = null;
      ws.close();
    }
  }

  private _errorIfDisposed(): void {
    if (this._isDisposed) {
      throw new Error('Terminal connection is disposed');
    }
  }

  private _name: string;
  private _onShutdownError: ((error: unknown) => void) | null;
  private _client: Terminal.ITerminalAPIClient;
  private _ws: WebSocket | null = null;
  private _status: Terminal.ConnectionStatus = 'connecting';
  private _attached = false;
  private _attempt = 0;
  private _timer: ReturnType<typeof setTimeout> | undefined = undefined;
  private _pending: Terminal.IMessage[] = [];
  private _isDisposed = false;
  private _messageReceived = new Signal<this, Terminal.IMessage>(this);
  private _statusChanged = new Signal<this, Terminal.ConnectionStatus>(this);
  private _disposed = new Signal<this, void>(this);
}

export namespace RemoteTerminalConnection {
  export interface IOptions {
    /** The compute server the shell runs on. */
    serverId: number;
    /** The terminal's name on it. */
    name: string;
    /** The page's connection settings (default: made from the page's config). */
    serverSettings?: ServerConnection.ISettings;
    /** The REST client for shutdown and the existence check (default: made from those). */
    client?: Terminal.ITerminalAPIClient;
    /** Told when ending the shell failed (it may still run on the server). */
    onShutdownError?: (error: unknown) => void;
  }
}
