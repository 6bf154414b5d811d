/**
 * The events service: the server extension's events parsed once from Jupyter Server's event
 * stream, as the shared test helper sends them (checked against the event schema).
 */
import { ServerEvents, SERVER_EVENT_SCHEMA } from '../events/service';
import { IServerEvent } from '../tokens';
import { FakeEvents, serverEventPayload } from './testing';

describe('ServerEvents', () => {
  let events: FakeEvents;
  let heard: IServerEvent[];

  beforeEach(() => {
    events = new FakeEvents();
    heard = [];
    events.service.stream.connect((_, event) => {
      heard.push(event);
    });
  });

  afterEach(() => events.dispose());

  it("hands on the extension's events, parsed", () => {
    events.server('state', 3, { state: 'running', progress: 'Booting' });
    events.server('cost_warning', null, {
      scope: 'budget',
      threshold: 0.8,
      spent: 400,
      limit: 500,
      month: '2030-01',
      message: 'The budget is at 80%.'
    });
    events.server('sync', 5, {
      sync: { id: 9, state: 'running', phase: 'scanning' }
    });
    events.server('hosts', null, { host_id: 2 });

    expect(heard).toEqual([
      {
        kind: 'state',
        server_id: 3,
        state: 'running',
        state_reason: '',
        progress: 'Booting'
      },
      {
        kind: 'cost_warning',
        server_id: null,
        state: null,
        state_reason: '',
        progress: '',
        scope: 'budget',
        threshold: 0.8,
        spent: 400,
        limit: 500,
        month: '2030-01',
        message: 'The budget is at 80%.'
      },
      {
        kind: 'sync',
        server_id: 5,
        state: null,
        state_reason: '',
        progress: '',
        sync: { id: 9, state: 'running', phase: 'scanning' }
      },
      {
        kind: 'hosts',
        server_id: null,
        state: null,
        state_reason: '',
        progress: '',
        host_id: 2
      }
    ]);
  });

  it('drops the events of other schemas and kinds it does not know', () => {
    events.other(
      'https://events.jupyter.org/jupyter_server/contents_service/v1',
      {
        action: 'save',
        path: 'a.ipynb'
      }
    );
    events.other(SERVER_EVENT_SCHEMA, { kind: 'later', server_id: 1 });
    expect(heard).toEqual([]);
  });

  it('stops listening when disposed', () => {
    events.service.dispose();
    events.server('state', 1);
    expect(events.service.isDisposed).toBe(true);
    expect(heard).toEqual([]);
  });

  it('hears nothing without an event manager', () => {
    const service = new ServerEvents(null);
    expect(service.isDisposed).toBe(false);
    service.dispose();
  });
});

describe('serverEventPayload', () => {
  it('refuses what the server extension would not send', () => {
    expect(() => serverEventPayload('later', 1)).toThrow(/Not an event/);
    expect(() =>
      serverEventPayload('sync', 1, { sync: { id: 'nine', state: 'running' } })
    ).toThrow(/Not an event/);
    expect(() =>
      serverEventPayload('auto_stopped', 1, { trigger: 'boredom' })
    ).toThrow(/Not an event/);
  });
});
