/**
 * How the frontend classifies the status endpoint's answers, and what the sidebar's banner
 * shows for each case.
 */
import { ServerConnection } from '@jupyterlab/services';
import * as React from 'react';

import { ApiError } from '../request';
import { StatusBanner } from '../sidebar';
import { describeStatus } from '../status';
import { IStatusSnapshot } from '../tokens';
import { FRONTEND_VERSION } from '../version';
import { mountReactPerTest } from './testing';

const missingError = () => new ApiError(404, 'Not Found', null, {});

describe('describeStatus', () => {
  it('is ok when the server extension has the frontend version', () => {
    const snapshot = describeStatus(
      { status: { version: '1.0.0', clouds: ['local'] } },
      '1.0.0'
    );
    expect(snapshot).toEqual({
      state: 'ok',
      frontendVersion: '1.0.0',
      status: { version: '1.0.0', clouds: ['local'] },
      error: null
    });
  });

  it('compares with the version in package.json by default', () => {
    expect(FRONTEND_VERSION).toBe(require('../../package.json').version);
    expect(
      describeStatus({ status: { version: FRONTEND_VERSION, clouds: [] } })
        .state
    ).toBe('ok');
  });

  it('reports a version mismatch', () => {
    const snapshot = describeStatus(
      { status: { version: '0.9.0', clouds: [] } },
      '1.0.0'
    );
    expect(snapshot.state).toBe('version-mismatch');
    expect(snapshot.status?.version).toBe('0.9.0');
    expect(snapshot.frontendVersion).toBe('1.0.0');
  });

  it('reports the server extension missing for a bare 404', () => {
    const snapshot = describeStatus({ error: missingError() }, '1.0.0');
    expect(snapshot.state).toBe('missing');
    expect(snapshot.status).toBeNull();
  });

  it('does not take a JSON 404 for a missing extension', () => {
    const error = new ApiError(404, 'No such thing', null, {
      message: 'No such thing'
    });
    expect(describeStatus({ error }, '1.0.0').state).toBe('unreachable');
  });

  it('reports other failures as unreachable, with their message', () => {
    const network = new ServerConnection.NetworkError(
      new TypeError('fetch failed')
    );
    expect(describeStatus({ error: network }, '1.0.0')).toMatchObject({
      state: 'unreachable',
      status: null,
      error: 'fetch failed'
    });
    const serverError = new ApiError(500, 'Internal Server Error');
    expect(describeStatus({ error: serverError }, '1.0.0')).toMatchObject({
      state: 'unreachable',
      error: 'Internal Server Error'
    });
    expect(describeStatus({ error: 'boom' }, '1.0.0').error).toBe('boom');
  });
});

describe('StatusBanner', () => {
  const mount = mountReactPerTest();

  function render(snapshot: IStatusSnapshot): HTMLElement {
    mount.render(<StatusBanner snapshot={snapshot} />);
    const banner = mount.container.querySelector<HTMLElement>(
      '.jp-ComputeServers-status'
    );
    expect(banner).not.toBeNull();
    return banner!;
  }

  it('shows the version and clouds when all is well', () => {
    const banner = render(
      describeStatus(
        { status: { version: '1.0.0', clouds: ['local', 'ssh'] } },
        '1.0.0'
      )
    );
    expect(banner.dataset.state).toBe('ok');
    expect(banner.getAttribute('role')).toBeNull();
    expect(banner.textContent).toContain('Server extension 1.0.0');
    expect(banner.textContent).toContain('clouds: local, ssh');
  });

  it('says when no cloud is enabled', () => {
    const banner = render(
      describeStatus({ status: { version: '1.0.0', clouds: [] } }, '1.0.0')
    );
    expect(banner.dataset.state).toBe('ok');
    expect(banner.textContent).toContain('no clouds enabled');
  });

  it('tells how to enable a missing server extension', () => {
    const banner = render(describeStatus({ error: missingError() }, '1.0.0'));
    expect(banner.dataset.state).toBe('missing');
    expect(banner.getAttribute('role')).toBe('alert');
    expect(banner.classList).toContain('jp-ComputeServers-status-error');
    expect(banner.textContent).toContain('server extension is not running');
    expect(banner.querySelector('code')?.textContent).toBe(
      'jupyter server extension enable jupyter_compute_servers'
    );
  });

  it('names both versions on a mismatch', () => {
    const banner = render(
      describeStatus({ status: { version: '0.9.0', clouds: [] } }, '1.0.0')
    );
    expect(banner.dataset.state).toBe('version-mismatch');
    expect(banner.getAttribute('role')).toBe('alert');
    expect(banner.textContent).toContain('Version mismatch.');
    expect(banner.textContent).toContain(
      'The server extension is version 0.9.0 but this page runs version 1.0.0'
    );
  });

  it('shows the error when the server cannot be reached', () => {
    const banner = render(
      describeStatus(
        {
          error: new ServerConnection.NetworkError(
            new TypeError('fetch failed')
          )
        },
        '1.0.0'
      )
    );
    expect(banner.dataset.state).toBe('unreachable');
    expect(banner.getAttribute('role')).toBe('alert');
    expect(banner.textContent).toContain('Cannot reach the Jupyter server.');
    expect(banner.textContent).toContain('fetch failed');
  });

  it('shows a loading state before the first answer', () => {
    const banner = render({
      state: 'loading',
      frontendVersion: '1.0.0',
      status: null,
      error: null
    });
    expect(banner.dataset.state).toBe('loading');
    expect(banner.textContent).toContain('Connecting');
  });
});
