/**
 * Team mode's shapes (`compute-servers/api/team`, `/queue`, `/audit`, `/audit/spend`, the
 * slices of `/hosts`, `/team/revocations`): names for the
 * schemas of openapi.json, from the types generated from it (`../api/schema`).
 */
import { components } from '../api/schema';

type Schemas = components['schemas'];

/** A server waiting in a shared host's GPU queue: its position and an estimate. */
export type IQueueEntry = Schemas['QueueEntry'];

/** One user's or Hub group's spend in a month. */
export type ISpendRow = Schemas['SpendRow'];

/** One line of the audit log: who did what to which server (and whose), when. */
export type IAuditEntry = Schemas['AuditEntry'];

/** A slice of a shared host a server holds (admins see them in `GET hosts`). */
export type IHostSlice = Schemas['HostSlice'];

/** A user whose access an admin revoked: who revoked it, when. */
export type IRevocation = Schemas['Revocation'];

/** A revocation just made, with what it ended. */
export type IRevocationDone = Schemas['RevocationDone'];
