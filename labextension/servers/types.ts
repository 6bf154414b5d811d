/**
 * The shapes of the compute servers REST API (`compute-servers/api/servers`, `.../clouds`):
 * names for the schemas of openapi.json, from the types generated from it (`../api/schema`).
 */
import { components, operations } from '../api/schema';

type Schemas = components['schemas'];

/** Every state a server can be in. */
export type ServerState = Schemas['Server']['state'];

/** The lifecycle actions (`POST servers/{id}/actions/{action}`). */
export type ServerAction =
  operations['serverAction']['parameters']['path']['action'];

/** What `allowed_actions` may list: the actions and `delete`. */
export type AllowedAction = Schemas['Server']['allowed_actions'][number];

export type IGpuSpec = NonNullable<Schemas['ServerConfig']['gpu']>;

/** A server's configuration; fields its cloud does not use are null. */
export type IServerConfig = Schemas['ServerConfig'];

/** The configuration fields a request gives (create, edit, estimate, a cloud's defaults). */
export type IServerConfigFields = Schemas['ServerConfigFields'];

export type ISpendLimit = NonNullable<Schemas['SpendLimit']>;

/** Stop the server every day at this time (24-hour HH:MM) in `timezone` (null: the costs one). */
export type IDailyStop = NonNullable<Schemas['DailyStop']>;

export type IProgress = NonNullable<Schemas['Server']['progress']>;

/** One compute server, as `GET servers/{id}` answers. */
export type IServer = Schemas['Server'];
/** Who is asking, whose servers these are, and the owner's quota (`GET team`). */
export type ITeam = Schemas['Team'];

export type IRange = Schemas['Range'];

export type IImageOffering = NonNullable<
  Schemas['Offerings']['images']
>[number];

/** What the local and ssh clouds offer; empty when the cloud is not available. */
export type IOfferings = Schemas['Offerings'];

/**
 * One enabled cloud, as `GET clouds` answers. Its `offerings` are free-form in the document
 * (each cloud has its own: `Offerings`, or `GcpOfferings` read by `gcpOfferings()`).
 */
export type ICloud = Omit<Schemas['Cloud'], 'offerings'> & {
  offerings: IOfferings;
};

/** The body of `POST servers`. */
export type IServerCreate = Schemas['ServerCreate'];

/** The body of `PATCH servers/{id}`: the fields of `POST servers` but `cloud`. */
export type IServerUpdate = Schemas['ServerUpdate'];

/** One state change, from `GET servers/{id}/history`. */
export type IHistoryEntry = Schemas['HistoryEntry'];
