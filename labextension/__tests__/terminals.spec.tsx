/**
 * Terminals on compute servers against a real `jupyter server` with the extension (see
 * jupyterServer.ts) and real shells on local compute servers: the REST client and model, the
 * terminado websocket connection (output, resize, replay on attaching, reattaching after a
 * drop, a shell that ends), JupyterLab's own Terminal widget on it in a tab, the commands, SSH
 * access; then the sidebar's list of terminals and the server picker on their own.
 */
import { Clipboard, WidgetTracker } from '@jupyterlab/apputils';
import { ServerConnection, Terminal as TerminalNS } from '@jupyterlab/services';
import { CommandRegistry } from '@lumino/commands';
import { Signal } from '@lumino/signaling';
import { Widget } from '@lumino/widgets';
import * as React from 'react';
import { act } from 'react';

import { ApiError } from '../request';
import { LiveUpdates } from '../servers/live';
import { ServersModel } from '../servers/model';
import {
  NEW_SERVER,
  PickServerBody,
  serverChoices
} from '../servers/pickServer';
import { cannotStart, ensureRunning } from '../servers/running';
import { IServer } from '../servers/types';
import { ServerDetailsLiveUpdates } from '../servers/details';
import {
  addTerminalCommands,
  applyTerminalSettings,
  TerminalCommandIDs
} from '../terminals/commands';
import {
  RemoteTerminalAPIClient,
  RemoteTerminalConnection,
  remoteTerminalSettings,
  RESET_SCREEN,
  terminalWebSocketUrl
} from '../terminals/connection';
import { describeEndError, ServerTerminals } from '../terminals/list';
import { ServerTerminalsModel, sortTerminals } from '../terminals/model';
import {
  describeSSHAccessError,
  fetchSSHAccess,
  SSHAccessView
} from '../terminals/sshAccess';
import {
  REMOTE_TERMINAL_CLASS,
  remoteTerminalLabel,
  remoteTerminalOptions,
  RemoteTerminalPanel
} from '../terminals/widget';
import { JupyterServer, sleep } from './jupyterServer';
import {
  FakeEvents,
  mountReactPerTest,
  renderOutsideAct,
  until
} from './testing';

jest.setTimeout(90000);

/**
 * xterm.js looks for WebGL on a canvas, which jsdom does not draw: say there is none (as a
 * browser without WebGL would), rather than have jsdom log that it is not implemented.
 */
function withoutCanvas(): void {
  let spy: jest.SpyInstance;
  beforeAll(() => {
    spy = jest
      .spyOn(HTMLCanvasElement.prototype, 'getContext')
      .mockImplementation(() => null);
  });
  afterAll(() => spy.mockRestore());
}

/** What a connection has printed so far, and a way to wait for more. */
class Screen {
  text = '';
  messages: TerminalNS.IMessage[] = [];
  constructor(connection: TerminalNS.ITerminalConnection) {
    connection.messageReceived.connect((_, message) => {
      this.messages.push(message);
      if (message.type === 'stdout') {
        this.text += String(message.content![0]);
      }
    });
  }
  async waitFor(pattern: RegExp, timeout = 15000): Promise<RegExpMatchArray> {
    await until(() => pattern.test(this.text), timeout).catch(() => {
      throw new Error(`${pattern} never showed; the screen was:\n${this.text}`);
    });
    return this.text.match(pattern)!;
  }
}

function type(connection: TerminalNS.ITerminalConnection, text: string): void {
  connection.send({ type: 'stdin', content: [text] });
}

describe('with a real server', () => {
  // jsdom's WebSocket sends the test page's origin, which Jupyter checks like a browser's.
  const api = new JupyterServer({ allowOrigin: 'http://localhost' });
  let server: IServer;
  const connections: RemoteTerminalConnection[] = [];

  function connect(name: string): RemoteTerminalConnection {
    const connection = new RemoteTerminalConnection({
      serverId: server.id,
      name,
      serverSettings: api.settings
    });
    connections.push(connection);
    return connection;
  }

  async function connected(connection: RemoteTerminalConnection) {
    await until(() => connection.connectionStatus === 'connected', 15000);
  }

  beforeAll(async () => {
    await api.start();
    server = await api.create('box', 'running');
  }, 90000);
  afterAll(() => api.stop(), 90000);
  afterEach(async () => {
    for (const connection of connections.splice(0)) {
      connection.dispose();
    }
    const { body } = await api.call('GET', `servers/${server.id}/terminals`);
    for (const terminal of body.terminals) {
      await api.call(
        'DELETE',
        `servers/${server.id}/terminals/${terminal.name}`
      );
    }
    api.requests = [];
  });

  describe('RemoteTerminalAPIClient', () => {
    it('starts, lists and ends shells on a running server', async () => {
      const client = new RemoteTerminalAPIClient(server.id, api.settings);
      expect(client.isAvailable).toBe(true);
      const first = await client.startNew();
      const named = await client.startNew({ name: 'build' });
      expect(first).toEqual({ name: '1' });
      expect(named).toEqual({ name: 'build' });
      expect((await client.listRunning()).map(t => t.name).sort()).toEqual([
        '1',
        'build'
      ]);

      await client.shutdown('build');
      // Gone already: not an error.
      await client.shutdown('build');
      expect(await client.listRunning()).toEqual([{ name: '1' }]);
      expect(api.requests.map(r => `${r.method} ${r.path}`)).toContain(
        `DELETE /compute-servers/api/servers/${server.id}/terminals/build`
      );
    });

    it('passes on the refusal of a server that is not running', async () => {
      const off = await api.create('off', 'deprovisioned');
      const client = new RemoteTerminalAPIClient(off.id, api.settings);
      const error = await client.startNew().catch(e => e);
      expect(error).toBeInstanceOf(ApiError);
      expect(error.status).toBe(409);
      expect(error.message).toBe(
        "Server 'off' is deprovisioned; start it to use terminals."
      );
      expect(await client.listRunning()).toEqual([]);
      await api.call('DELETE', `servers/${off.id}`, undefined, 204);
    });
  });

  describe('RemoteTerminalConnection', () => {
    it('runs a shell in the server workspace, and resizes it', async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      const connection = connect('1');
      const screen = new Screen(connection);
      await connected(connection);
      expect(connection.serverSettings.wsUrl).toMatch(
        new RegExp(`/compute-servers/api/servers/${server.id}/?$`)
      );

      type(connection, 'echo "answer: $((6 * 7))"; pwd\r');
      await screen.waitFor(/answer: 42/);
      const pwd = await screen.waitFor(/\n(\/\S+\/disk)\r?\n/);
      expect(pwd[1]).toMatch(new RegExp(`/${server.id}/disk$`));

      connection.send({ type: 'set_size', content: [31, 101, 600, 800] });
      type(connection, 'stty size\r');
      await screen.waitFor(/31 101\r?\n/);
    });

    it('replays the recent output to a new connection (a reload)', async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      const first = connect('1');
      const before = new Screen(first);
      await connected(first);
      type(first, 'echo "marker-$((1 + 1))"\r');
      await before.waitFor(/marker-2/);
      first.dispose();

      const second = connect('1');
      const after = new Screen(second);
      await connected(second);
      await after.waitFor(/marker-2/);
      // A first attach shows the output as it comes: no reset before it.
      expect(after.text.startsWith(RESET_SCREEN)).toBe(false);
    });

    it('attaches again after the websocket drops, showing the output once', async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      const connection = connect('1');
      const screen = new Screen(connection);
      const statuses: string[] = [];
      connection.connectionStatusChanged.connect((_, s) => statuses.push(s));
      await connected(connection);
      type(connection, 'echo "before-$((2 + 2))"\r');
      await screen.waitFor(/before-4/);

      // The network drops (not a close on purpose).
      (connection as any)._ws.close(4000, 'dropped');
      await until(() => statuses.length >= 2, 15000);
      await connected(connection);
      // The screen is reset, then the output replayed: it shows once.
      await until(() => screen.text.includes(RESET_SCREEN), 15000);
      const replayed = screen.text.slice(screen.text.lastIndexOf(RESET_SCREEN));
      await until(
        () =>
          screen.text
            .slice(screen.text.lastIndexOf(RESET_SCREEN))
            .includes('before-4'),
        15000
      );
      expect(replayed.startsWith(RESET_SCREEN)).toBe(true);
      expect(statuses).toEqual(['connected', 'connecting', 'connected']);

      type(connection, 'echo "after-$((3 + 3))"\r');
      await screen.waitFor(/after-6/);
    });

    it('closes when the shell ends', async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      const connection = connect('1');
      await connected(connection);
      let disposed = false;
      connection.disposed.connect(() => (disposed = true));
      type(connection, 'exit\r');
      await until(() => disposed, 15000);
      expect(connection.connectionStatus).toBe('disconnected');
      await sleep(200);
      expect(
        (await api.call('GET', `servers/${server.id}/terminals`)).body.terminals
      ).toEqual([]);
    });

    it('closes instead of attaching again when the shell ended while it was away', async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      const connection = connect('1');
      const screen = new Screen(connection);
      await connected(connection);
      let disposed = false;
      connection.disposed.connect(() => (disposed = true));
      // The socket drops, and meanwhile the shell is ended elsewhere (the sidebar).
      (connection as any)._ws.close(4000, 'dropped');
      await api.call(
        'DELETE',
        `servers/${server.id}/terminals/1`,
        undefined,
        204
      );
      await until(() => disposed, 15000);
      // Told as the server would have: the Terminal widget says the session finished.
      expect(screen.messages.map(m => m.type)).toContain('disconnect');
      expect(
        api.requests.filter(
          r => r.method === 'GET' && r.path.endsWith('/terminals')
        ).length
      ).toBeGreaterThan(0);
    });

    it('ends the shell on shutdown', async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      const connection = connect('1');
      await connected(connection);
      await connection.shutdown();
      expect(connection.isDisposed).toBe(true);
      expect(api.requests.map(r => `${r.method} ${r.path}`)).toContain(
        `DELETE /compute-servers/api/servers/${server.id}/terminals/1`
      );
      expect(
        (await api.call('GET', `servers/${server.id}/terminals`)).body.terminals
      ).toEqual([]);
    });
  });

  describe('ServerTerminalsModel', () => {
    let model: ServerTerminalsModel;

    beforeEach(() => {
      model = new ServerTerminalsModel(api.settings);
    });

    afterEach(() => model.dispose());

    it('lists, starts and ends the terminals of a server', async () => {
      const changes: number[] = [];
      model.changed.connect((_, id) => changes.push(id));
      expect(model.entry(server.id)).toEqual({
        value: [],
        loaded: false,
        error: null,
        at: 0
      });

      const started = await model.create(server.id);
      expect(started).toEqual({
        name: '1',
        pid: expect.any(Number),
        cwd: expect.stringMatching(/\/disk$/),
        started: expect.any(Number)
      });
      // Listed at once, before any refresh.
      expect(model.entry(server.id).value.map(t => t.name)).toEqual(['1']);
      await model.create(server.id, { name: 'logs' });
      await model.refresh(server.id);
      expect(model.entry(server.id).value.map(t => t.name)).toEqual([
        '1',
        'logs'
      ]);
      expect(model.entry(server.id).loaded).toBe(true);

      await model.shutdown(server.id, 'logs');
      expect(model.entry(server.id).value.map(t => t.name)).toEqual(['1']);
      expect(changes.every(id => id === server.id)).toBe(true);
    });

    it("passes on the server's refusal to end an unknown terminal", async () => {
      const error = await model.shutdown(server.id, 'nope').catch(e => e);
      expect(error).toBeInstanceOf(ApiError);
      expect(error.status).toBe(404);
      expect(describeEndError(error, 'box')).toBe(
        "No terminal 'nope' on this server. It has probably ended already; the list has been read again."
      );
    });

    it('keeps why reading failed', async () => {
      await model.refresh(999);
      expect(model.entry(999).loaded).toBe(false);
      expect(model.entry(999).error).toMatch(/999/);
    });

    it('reads a server again on its terminals events, while watched', async () => {
      const servers = new ServersModel(api.settings);
      await servers.refresh();
      const events = new FakeEvents();
      const live = new ServerDetailsLiveUpdates({
        model,
        servers,
        events: events.service,
        kind: 'terminals',
        interval: 60 * 1000,
        auto: false,
        name: 'test'
      });
      const gets = () =>
        api.requests.filter(
          r =>
            r.method === 'GET' &&
            r.path.endsWith(`/servers/${server.id}/terminals`)
        ).length;

      events.server('terminals', server.id);
      await sleep(300);
      expect(gets()).toBe(0);

      model.watched = true;
      await until(() => model.entry(server.id).loaded);
      expect(gets()).toBe(1);

      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      events.server('terminals', server.id);
      events.server('kernels', server.id);
      events.server('terminals', server.id);
      await until(() => model.entry(server.id).value.length === 1);
      await sleep(300);
      expect(gets()).toBe(2);
      live.dispose();
      events.dispose();
      servers.dispose();
    });
  });

  describe('the terminal tab', () => {
    renderOutsideAct();
    withoutCanvas();
    let panel: RemoteTerminalPanel | null = null;

    afterEach(() => {
      if (panel && !panel.isDisposed) {
        panel.dispose();
      }
      panel = null;
    });

    it("is JupyterLab's Terminal on the shell, titled with the server, ending it when closed", async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      panel = new RemoteTerminalPanel({
        serverId: server.id,
        serverName: 'box',
        name: '1',
        serverSettings: api.settings,
        terminalOptions: { fontSize: 17, shutdownOnClose: false }
      });
      Widget.attach(panel, document.body);
      expect(panel.title.label).toBe('Terminal 1 on box');
      expect(panel.content.hasClass('jp-Terminal')).toBe(false);
      expect(panel.content.hasClass(REMOTE_TERMINAL_CLASS)).toBe(true);
      expect(panel.content.getOption('fontSize')).toBe(17);
      // Closing it ends the shell, whatever the setting for local terminals says.
      expect(panel.content.getOption('shutdownOnClose')).toBe(true);

      const session = panel.content.session;
      await until(() => session.connectionStatus === 'connected', 15000);
      // The widget names itself when it connects; the title stays on the server.
      await sleep(50);
      expect(panel.title.label).toBe('Terminal 1 on box');
      panel.content.title.label = 'alice@box: ~';
      expect(panel.title.label).toBe('Terminal 1 on box');
      expect(panel.title.caption).toBe(
        'A shell on the compute server box\nalice@box: ~'
      );
      panel.serverName = 'renamed';
      expect(panel.title.label).toBe('Terminal 1 on renamed');

      applyTerminalSettings(panel, {
        fontSize: 11,
        shutdownOnClose: false,
        initialCommand: 'rm -rf /'
      });
      expect(panel.content.getOption('fontSize')).toBe(11);
      expect(panel.content.getOption('shutdownOnClose')).toBe(true);

      panel.dispose();
      await until(
        () =>
          api.requests.some(
            r =>
              r.method === 'DELETE' &&
              r.path.endsWith(`/servers/${server.id}/terminals/1`)
          ),
        10000
      );
      await sleep(200);
      expect(
        (await api.call('GET', `servers/${server.id}/terminals`)).body.terminals
      ).toEqual([]);
    });
  });

  describe('the commands', () => {
    renderOutsideAct();
    withoutCanvas();
    let commands: CommandRegistry;
    let servers: ServersModel;
    let terminals: ServerTerminalsModel;
    let tracker: WidgetTracker<RemoteTerminalPanel>;
    let shell: Widget & {
      added: Widget[];
      activated: string[];
      add(widget: Widget): void;
      activateById(id: string): void;
      currentWidget: Widget | null;
    };

    beforeEach(async () => {
      commands = new CommandRegistry();
      servers = new ServersModel(api.settings);
      terminals = new ServerTerminalsModel(api.settings);
      await servers.refresh();
      tracker = new WidgetTracker<RemoteTerminalPanel>({
        namespace: `test-${Date.now()}`
      });
      const host = new Widget();
      Widget.attach(host, document.body);
      shell = Object.assign(host, {
        added: [] as Widget[],
        activated: [] as string[],
        currentWidget: null as Widget | null,
        add(widget: Widget) {
          shell.added.push(widget);
          Widget.attach(widget, document.body);
        },
        activateById(id: string) {
          shell.activated.push(id);
        }
      });
      addTerminalCommands({
        commands,
        shell: shell as any,
        servers,
        terminals,
        serverSettings: api.settings,
        tracker,
        terminalOptions: () => ({ fontSize: 15 })
      });
    });

    afterEach(() => {
      for (const widget of shell.added) {
        widget.dispose();
      }
      tracker.dispose();
      shell.dispose();
      terminals.dispose();
      servers.dispose();
    });

    it('open a new terminal on a server, in a tab named after it', async () => {
      expect(
        commands.label(TerminalCommandIDs.newTerminal, { serverId: server.id })
      ).toBe('New Terminal on box');
      expect(commands.label(TerminalCommandIDs.newTerminal, {})).toBe(
        'Terminal on Compute Server…'
      );
      expect(
        commands.label(TerminalCommandIDs.newTerminal, { isPalette: true })
      ).toBe('New Terminal on Compute Server…');

      const panel = (await commands.execute(TerminalCommandIDs.newTerminal, {
        serverId: server.id
      })) as RemoteTerminalPanel;
      expect(panel).toBeInstanceOf(RemoteTerminalPanel);
      expect(panel.title.label).toBe('Terminal 1 on box');
      expect(panel.content.getOption('fontSize')).toBe(15);
      expect(shell.added).toEqual([panel]);
      expect(shell.activated).toEqual([panel.id]);
      expect(tracker.has(panel)).toBe(true);
      expect(terminals.entry(server.id).value.map(t => t.name)).toEqual(['1']);

      // Opening it again shows the same tab.
      const again = await commands.execute(TerminalCommandIDs.openTerminal, {
        serverId: server.id,
        name: '1'
      });
      expect(again).toBe(panel);
      expect(shell.added).toHaveLength(1);
    });

    it('attach to an existing terminal (a reload), and not to one that ended', async () => {
      await api.call('POST', `servers/${server.id}/terminals`, {}, 201);
      const panel = (await commands.execute(TerminalCommandIDs.openTerminal, {
        serverId: server.id,
        name: '1'
      })) as RemoteTerminalPanel;
      expect(panel.title.label).toBe('Terminal 1 on box');
      expect(
        commands.label(TerminalCommandIDs.openTerminal, {
          serverId: server.id,
          name: '1'
        })
      ).toBe('Open Terminal 1 on box');

      const error = await commands
        .execute(TerminalCommandIDs.openTerminal, {
          serverId: server.id,
          name: 'ended'
        })
        .catch(e => e);
      expect(error.message).toBe('There is no terminal ended on box any more.');
      expect(shell.added).toHaveLength(1);
    });

    it('start a server that is off first, then open the terminal', async () => {
      const off = await api.create('later', 'off');
      await servers.refresh();
      const live = new LiveUpdates({ model: servers, interval: 100 });
      try {
        const panel = (await commands.execute(TerminalCommandIDs.newTerminal, {
          serverId: off.id
        })) as RemoteTerminalPanel;
        expect(panel.title.label).toBe('Terminal 1 on later');
        expect(servers.server(off.id)!.state).toBe('running');
      } finally {
        live.dispose();
        await api.act(off.id, 'deprovision');
        await api.call('DELETE', `servers/${off.id}`, undefined, 204);
      }
    });

    it('tabs follow a renamed server', async () => {
      const panel = (await commands.execute(TerminalCommandIDs.newTerminal, {
        serverId: server.id
      })) as RemoteTerminalPanel;
      await servers.update(server.id, { name: 'box2' });
      try {
        await until(() => panel.title.label === 'Terminal 1 on box2');
      } finally {
        await servers.update(server.id, { name: 'box' });
      }
    });
  });

  describe('SSH access', () => {
    it("gives a running server's ssh config snippet", async () => {
      const access = await fetchSSHAccess(server.id, api.settings);
      expect(access.host_alias).toBe('compute-box');
      expect(access.config).toMatch(/^Host compute-box\n/);
      expect(access.config).toContain('HostName 127.0.0.1');
      expect(access.config).toContain(`IdentityFile ${access.identity_file}`);
      expect(access.config).toContain(
        `UserKnownHostsFile ${access.known_hosts_file}`
      );
      expect(access.examples).toContain('ssh compute-box');
    });

    it('says to start a server that is not running', async () => {
      const off = await api.create('off', 'deprovisioned');
      const error = await fetchSSHAccess(off.id, api.settings).catch(e => e);
      expect(error.status).toBe(409);
      expect(describeSSHAccessError(error, 'off')).toBe(
        "Server 'off' is deprovisioned; SSH access needs it running. Start off, then ask again."
      );
      await api.call('DELETE', `servers/${off.id}`, undefined, 204);
    });
  });
});

describe('terminal connection settings', () => {
  const settings = ServerConnection.makeSettings({
    baseUrl: 'http://example.org/lab/base/',
    wsUrl: 'wss://example.org/lab/base/'
  });

  it("put the websocket on the server's terminals", () => {
    expect(remoteTerminalSettings(settings, 3).wsUrl).toBe(
      'wss://example.org/lab/base/compute-servers/api/servers/3/'
    );
    expect(remoteTerminalSettings(settings, 3).baseUrl).toBe(settings.baseUrl);
    expect(terminalWebSocketUrl(settings, 3, 'a b')).toBe(
      'wss://example.org/lab/base/compute-servers/api/servers/3/terminals/websocket/a%20b'
    );
  });

  it('close the tab by ending the shell, and run the initial command only in a new one', () => {
    expect(
      remoteTerminalOptions(
        { shutdownOnClose: false, initialCommand: 'ls' },
        true
      )
    ).toEqual({ shutdownOnClose: true, initialCommand: 'ls' });
    expect(remoteTerminalOptions({ initialCommand: 'ls' }, false)).toEqual({
      shutdownOnClose: true,
      initialCommand: ''
    });
    expect(remoteTerminalLabel('2', 'gpu-box')).toBe('Terminal 2 on gpu-box');
  });

  it('sort terminals by name, numbers as numbers', () => {
    expect(
      sortTerminals([{ name: '10' }, { name: 'b' }, { name: '2' }]).map(
        t => t.name
      )
    ).toEqual(['2', '10', 'b']);
  });
});

/** A server as the API answers, for the picker. */
function makeServer(overrides: Partial<IServer> = {}): IServer {
  return {
    id: 1,
    name: 'box',
    owner: 'me',
    color: '#1f77b4',
    notes: '',
    cloud: 'local',
    state: 'running',
    state_reason: '',
    config: {} as IServer['config'],
    idle_timeout_minutes: null,
    spend_limit: null,
    created: 0,
    updated: 0,
    operation: null,
    progress: null,
    allowed_actions: ['stop'],
    daily_stop: null,
    cost: null,
    auto_stop: null,
    mount: null,
    sync: {
      excludes: [],
      server_only: [],
      max_file_size_mb: 1024,
      auto_sync_minutes: null,
      before_kernel: true
    },
    ...overrides
  };
}

describe('choosing a server', () => {
  const off = makeServer({
    id: 2,
    name: 'off',
    state: 'off',
    allowed_actions: ['start', 'deprovision']
  });
  const broken = makeServer({
    id: 3,
    name: 'broken',
    state: 'error',
    state_reason: 'disk full',
    allowed_actions: ['deprovision']
  });
  const stopping = makeServer({
    id: 4,
    name: 'stopping',
    state: 'stopping',
    operation: 'stop',
    allowed_actions: []
  });
  const running = makeServer({ id: 5, name: 'up' });

  it('says why a server cannot be started for it', () => {
    expect(cannotStart(running)).toBeNull();
    expect(cannotStart(off)).toBeNull();
    expect(cannotStart(makeServer({ state: 'starting' }))).toBeNull();
    expect(cannotStart(broken)).toBe(
      'broken is in error (disk full); deprovision it, then start it again.'
    );
    expect(cannotStart(stopping)).toBe(
      'stopping is stopping; wait until it is done, then start it.'
    );
  });

  it('offers running servers first, then those that start first, the others disabled', () => {
    expect(
      serverChoices([broken, off, stopping, running]).map(c => [
        c.label,
        c.disabled !== null
      ])
    ).toEqual([
      ['up', false],
      ['off (off: starts first)', false],
      ['broken (error)', true],
      ['stopping (stopping)', true]
    ]);
  });

  it('picks the first usable server, or a new one when there is none', () => {
    expect(new PickServerBody([off, running], 'the terminal').getValue()).toBe(
      5
    );
    expect(new PickServerBody([broken], 'the terminal').getValue()).toBe(
      NEW_SERVER
    );
    expect(new PickServerBody([], 'the terminal').getValue()).toBe(NEW_SERVER);
  });

  it('does not start a server that cannot be', async () => {
    const model = { act: jest.fn() } as any;
    await expect(
      ensureRunning(model, broken, 'for a terminal')
    ).rejects.toThrow('deprovision it');
    expect(model.act).not.toHaveBeenCalled();
    await expect(ensureRunning(model, running, 'x')).resolves.toBe(running);
  });

  it('waits for a server that is starting or rebooting, without asking again', async () => {
    const changed = new Signal<unknown, void>({});
    let current = makeServer({
      state: 'running',
      operation: 'reboot',
      allowed_actions: []
    });
    const model = {
      act: jest.fn(),
      changed,
      server: () => current
    } as any;
    const done = ensureRunning(model, current, 'for a terminal');
    await sleep(10);
    current = makeServer({ state: 'running' });
    changed.emit();
    await expect(done).resolves.toBe(current);
    expect(model.act).not.toHaveBeenCalled();
  });

  it('says why a start failed', async () => {
    const changed = new Signal<unknown, void>({});
    let current = off;
    const model = {
      act: jest.fn(async () => {
        current = { ...off, state: 'starting', operation: 'start' };
        return current;
      }),
      changed,
      server: () => current
    } as any;
    const done = ensureRunning(model, off, 'for a terminal');
    await until(() => model.act.mock.calls.length === 1);
    current = {
      ...off,
      state: 'error',
      state_reason: 'start failed: no GPU freed within 1 minutes'
    };
    changed.emit();
    await expect(done).rejects.toThrow(
      'off is in error: start failed: no GPU freed within 1 minutes'
    );
    expect(model.act).toHaveBeenCalledWith(2, 'start');
  });
});

describe('the terminal list', () => {
  const mount = mountReactPerTest();

  function render(
    value: { name: string; started?: number; cwd?: string }[],
    extra: Partial<React.ComponentProps<typeof ServerTerminals>> = {}
  ) {
    mount.render(
      <ServerTerminals
        serverName="gpu-box"
        entry={{ value, loaded: true, error: null, at: 1 }}
        onOpen={() => undefined}
        onEnd={async () => undefined}
        now={1000 + 125}
        {...extra}
      />
    );
  }

  const row = (name: string) =>
    mount.container.querySelector<HTMLElement>(
      `.jp-ComputeServers-terminal[data-terminal-name="${name}"]`
    )!;

  it('shows each terminal with its age, Open and End', () => {
    const opened: string[] = [];
    render([{ name: '1', started: 1000, cwd: '/w/disk' }], {
      onOpen: t => opened.push(t.name)
    });
    expect(
      mount.container.querySelector('.jp-ComputeServers-terminalsHeader')!
        .textContent
    ).toBe('1 terminal');
    expect(
      row('1').querySelector('.jp-ComputeServers-terminalName')!.textContent
    ).toBe('Terminal 1');
    expect(
      row('1').querySelector<HTMLElement>('.jp-ComputeServers-terminalName')!
        .title
    ).toBe('Terminal 1 on gpu-box\nStarted in /w/disk');
    expect(
      row('1').querySelector('.jp-ComputeServers-kernelAge')!.textContent
    ).toBe('2 min');
    act(() =>
      row('1')
        .querySelector<HTMLButtonElement>('.jp-ComputeServers-terminalOpen')!
        .click()
    );
    expect(opened).toEqual(['1']);
  });

  it('disables End while ending, and shows why it failed', async () => {
    let fail: (error: unknown) => void = () => undefined;
    render([{ name: '1' }], {
      onEnd: () =>
        new Promise((_, reject) => {
          fail = reject;
        })
    });
    const end = () =>
      row('1').querySelector<HTMLButtonElement>(
        '.jp-ComputeServers-terminalEnd'
      )!;
    act(() => end().click());
    expect(end().disabled).toBe(true);
    expect(end().textContent).toBe('Ending…');
    await act(async () => {
      fail(new ApiError(502, 'Cannot reach gpu-box.'));
      await sleep(0);
    });
    expect(end().disabled).toBe(false);
    expect(row('1').querySelector('[role="alert"]')!.textContent).toBe(
      'Could not end terminal 1: Cannot reach gpu-box. Check that gpu-box is running and reachable, then try again.'
    );
  });

  it('says when there are none, while reading, and a failed read', () => {
    render([]);
    expect(mount.container.textContent).toBe('No terminals');
    mount.render(
      <ServerTerminals
        serverName="gpu-box"
        entry={{ value: [], loaded: false, error: null, at: 0 }}
        onOpen={() => undefined}
        onEnd={async () => undefined}
      />
    );
    expect(mount.container.textContent).toBe('Reading the terminals…');
    let retried = 0;
    mount.render(
      <ServerTerminals
        serverName="gpu-box"
        entry={{ value: [], loaded: false, error: 'boom', at: 0 }}
        onOpen={() => undefined}
        onEnd={async () => undefined}
        onRetry={() => retried++}
      />
    );
    const alert = mount.container.querySelector('[role="alert"]')!;
    expect(alert.textContent).toContain(
      'Could not read the terminals on gpu-box: boom'
    );
    act(() => alert.querySelector<HTMLButtonElement>('button')!.click());
    expect(retried).toBe(1);
  });
});

describe('the SSH access dialog', () => {
  const mount = mountReactPerTest();

  it('shows the snippet, the key files and examples, each with a copy button', () => {
    mount.render(
      <SSHAccessView
        server={{ name: 'gpu-box' }}
        access={{
          host_alias: 'compute-gpu-box',
          config: 'Host compute-gpu-box\n    HostName 10.0.0.5\n',
          known_hosts: '10.0.0.5 ssh-ed25519 AAAA',
          known_hosts_file: '/data/ssh-access/1/known_hosts',
          identity_file: '/data/keys/1',
          workspace: '/home/jupyter/work',
          examples: ['ssh compute-gpu-box', 'scp data.csv compute-gpu-box:']
        }}
      />
    );
    const snippet = (name: string) =>
      mount.container.querySelector(`[data-snippet="${name}"]`)!;
    expect(
      snippet('config').querySelector('.jp-ComputeServers-snippetText')!
        .textContent
    ).toBe('Host compute-gpu-box\n    HostName 10.0.0.5\n');
    expect(snippet('known_hosts').textContent).toContain(
      'Written to /data/ssh-access/1/known_hosts'
    );
    expect(
      snippet('identity_file').querySelector('.jp-ComputeServers-snippetText')!
        .textContent
    ).toBe('/data/keys/1');
    expect(
      Array.from(snippet('examples').querySelectorAll('li code')).map(
        c => c.textContent
      )
    ).toEqual(['ssh compute-gpu-box', 'scp data.csv compute-gpu-box:']);
    expect(
      mount.container.querySelectorAll('.jp-ComputeServers-copy')
    ).toHaveLength(6);

    const copy = snippet('config').querySelector<HTMLButtonElement>(
      '.jp-ComputeServers-copy'
    )!;
    expect(copy.getAttribute('aria-label')).toBe(
      'Copy lines for ~/.ssh/config'
    );
    const copied = jest
      .spyOn(Clipboard, 'copyToSystem')
      .mockImplementation(() => undefined);
    act(() => copy.click());
    expect(copied).toHaveBeenCalledWith(
      'Host compute-gpu-box\n    HostName 10.0.0.5\n'
    );
    expect(copy.textContent).toBe('Copied');

    // Where the page may not copy, it says so.
    copied.mockImplementation(() => {
      throw new Error('not allowed');
    });
    const known = snippet('known_hosts').querySelector<HTMLButtonElement>(
      '.jp-ComputeServers-copy'
    )!;
    act(() => known.click());
    expect(known.textContent).toBe('Select and copy');
    copied.mockRestore();
  });
});
