import * as React from 'react';

import { components } from '../api/schema';
import { Field } from '../create/field';
import { IServer } from '../servers/types';

export type WorkspaceMode = components['schemas']['Workspace']['mode'];

/** The body's `workspace` object (create and `PATCH`). */
export type IWorkspaceUpdate = components['schemas']['WorkspaceUpdate'];

/** The workspace setting as the create and edit forms hold it. */
export interface IWorkspaceValues {
  workspace_mode: WorkspaceMode;
  /** The directory of the Jupyter root to mount ('' for the root), as typed. */
  mount_path: string;
  mount_read_only: boolean;
}

export type WorkspaceErrorKey = keyof IWorkspaceValues;

/** What each mode does, and does not: said where the mode is chosen. */
export const WORKSPACE_MODES: ReadonlyArray<{
  mode: WorkspaceMode;
  label: string;
  hint: string;
}> = [
  {
    mode: 'synced',
    label: 'Synced copy',
    hint:
      'Files are copied to the server and back by Sync (by itself before a kernel starts, ' +
      'and on a schedule if set). Work goes on while the link is down.'
  },
  {
    mode: 'mounted',
    label: 'Mounted live',
    hint:
      "The server's code reads and writes the files here directly, mounted at each start: " +
      'nothing is copied, and what a kernel writes shows here at once. Every file access ' +
      'is a round trip over the connection, nothing works while it is down (files fail ' +
      'with an error, never stale), and renames across the mount are not atomic.'
  },
  {
    mode: 'both',
    label: 'Both',
    hint:
      'The mount beside a synced copy: large, read-mostly data through the mount, ' +
      'a working directory synced as usual.'
  }
];

/** A server's setting as form values (the default for a new server). */
export function workspaceValues(server?: IServer): IWorkspaceValues {
  const workspace = server?.workspace;
  return {
    workspace_mode: workspace?.mode ?? 'synced',
    mount_path: workspace?.mount.path ?? '',
    mount_read_only: workspace?.mount.read_only ?? false
  };
}

/** The `workspace` object for the values (the mount point stays as it was, or the default). */
export function buildWorkspace(values: IWorkspaceValues): IWorkspaceUpdate {
  return {
    mode: values.workspace_mode,
    mount: {
      path: values.mount_path.trim(),
      read_only: values.mount_read_only
    }
  };
}

/** Where to show the server's error about `field`, when it is the workspace's. */
export function workspaceErrorKey(
  field: string | null
): WorkspaceErrorKey | null {
  switch (field) {
    case 'workspace':
    case 'workspace.mode':
      return 'workspace_mode';
    case 'workspace.mount':
    case 'workspace.mount.path':
    case 'workspace.mount.mount_point':
      return 'mount_path';
    case 'workspace.mount.read_only':
      return 'mount_read_only';
    default:
      return null;
  }
}

export interface IWorkspaceFieldsProps {
  values: IWorkspaceValues;
  errors: Partial<Record<WorkspaceErrorKey, string>>;
  disabled?: boolean;
  onChange: (update: <V extends IWorkspaceValues>(values: V) => V) => void;
}

/** The workspace mode, and for a mount which directory and whether read-only. */
export function WorkspaceFields(props: IWorkspaceFieldsProps): JSX.Element {
  const { values, errors, disabled } = props;
  const chosen = WORKSPACE_MODES.find(m => m.mode === values.workspace_mode);
  const set = <K extends WorkspaceErrorKey>(
    key: K,
    value: IWorkspaceValues[K]
  ) => props.onChange(latest => ({ ...latest, [key]: value }));
  return (
    <div className="jp-ComputeServers-workspaceFields">
      <Field
        name="workspace_mode"
        label="Workspace"
        hint={chosen?.hint}
        error={errors.workspace_mode}
      >
        <select
          className="jp-mod-styled"
          name="workspace_mode"
          value={values.workspace_mode}
          disabled={disabled}
          onChange={event =>
            set('workspace_mode', event.target.value as WorkspaceMode)
          }
        >
          {WORKSPACE_MODES.map(m => (
            <option key={m.mode} value={m.mode}>
              {m.label}
            </option>
          ))}
        </select>
      </Field>
      {values.workspace_mode !== 'synced' && (
        <div className="jp-ComputeServers-fieldRow">
          <Field
            name="mount_path"
            label="Directory to mount"
            hint="Of the Jupyter root; empty: all of it."
            error={errors.mount_path}
          >
            <input
              className="jp-mod-styled"
              name="mount_path"
              value={values.mount_path}
              placeholder="the Jupyter root"
              disabled={disabled}
              autoComplete="off"
              spellCheck={false}
              aria-invalid={errors.mount_path ? true : undefined}
              onChange={event => set('mount_path', event.target.value)}
            />
          </Field>
          <Field
            name="mount_read_only"
            label="Read-only"
            error={errors.mount_read_only}
          >
            <input
              type="checkbox"
              name="mount_read_only"
              checked={values.mount_read_only}
              disabled={disabled}
              onChange={event => set('mount_read_only', event.target.checked)}
            />
          </Field>
        </div>
      )}
    </div>
  );
}
