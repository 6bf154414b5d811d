/** The workspace setting in the create and edit dialogs: the mode, what it means, the mount. */
import * as React from 'react';
import { act } from 'react';

import {
  IWorkspaceValues,
  WorkspaceFields,
  workspaceValues
} from '../mount/workspaceFields';
import {
  buildCreateRequest,
  errorKeyFor,
  initialValues
} from '../servers/createForm';
import { buildUpdateRequest, editFormValues } from '../servers/editForm';
import { ICloud } from '../servers/types';
import { makeServer, mountReactPerTest } from './testing';

const CLOUD = {
  name: 'local',
  label: 'This machine',
  description: '',
  available: true,
  reason: '',
  config_fields: [],
  defaults: {},
  offerings: {}
} as unknown as ICloud;

describe('WorkspaceFields', () => {
  const mount = mountReactPerTest();
  let values: IWorkspaceValues;

  function render(): void {
    mount.render(
      <WorkspaceFields
        values={values}
        errors={{ mount_path: 'no such directory' }}
        onChange={update => {
          values = update(values);
          render();
        }}
      />
    );
  }

  const query = <T extends Element>(selector: string) =>
    mount.container.querySelector<T>(selector);

  it('offers the modes, says what each does, and asks what to mount only for a mount', () => {
    values = workspaceValues();
    render();
    const select = query<HTMLSelectElement>('select[name="workspace_mode"]')!;
    expect(Array.from(select.options).map(o => o.value)).toEqual([
      'synced',
      'mounted',
      'both'
    ]);
    expect(query('input[name="mount_path"]')).toBeNull();
    expect(mount.container.textContent).toContain('copied');

    act(() => {
      select.value = 'mounted';
      select.dispatchEvent(new Event('change', { bubbles: true }));
    });
    expect(values.workspace_mode).toBe('mounted');
    // What a mount does not do is said where it is chosen.
    expect(mount.container.textContent).toContain('round trip');
    expect(mount.container.textContent).toContain('not atomic');
    expect(query('input[name="mount_path"]')).not.toBeNull();
    expect(mount.container.textContent).toContain('no such directory');

    const readOnly = query<HTMLInputElement>('input[name="mount_read_only"]')!;
    act(() => readOnly.click());
    expect(values.mount_read_only).toBe(true);
  });
});

describe('the workspace in requests', () => {
  it('is sent on create only when not the default', () => {
    const values = { ...initialValues([CLOUD]), name: 'box' };
    expect(buildCreateRequest(values, CLOUD).workspace).toBeUndefined();
    expect(
      buildCreateRequest(
        { ...values, workspace_mode: 'both', mount_path: ' data/ ' },
        CLOUD
      ).workspace
    ).toEqual({ mode: 'both', mount: { path: 'data/', read_only: false } });
  });

  it('is sent on edit only when changed', () => {
    const server = makeServer({
      workspace: {
        mode: 'mounted',
        mount: { path: 'data', read_only: true, mount_point: 'jupyter' }
      }
    });
    const values = editFormValues(server);
    expect(values).toMatchObject({
      workspace_mode: 'mounted',
      mount_path: 'data',
      mount_read_only: true
    });
    expect(buildUpdateRequest(values, server, CLOUD)).toEqual({});
    expect(
      buildUpdateRequest({ ...values, workspace_mode: 'synced' }, server, CLOUD)
    ).toEqual({
      workspace: {
        mode: 'synced',
        mount: { path: 'data', read_only: true }
      }
    });
  });

  it("shows the server's errors at the workspace's inputs", () => {
    expect(errorKeyFor('workspace.mode')).toBe('workspace_mode');
    expect(errorKeyFor('workspace.mount.path')).toBe('mount_path');
    expect(errorKeyFor('workspace.mount.read_only')).toBe('mount_read_only');
  });
});
