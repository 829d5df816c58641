// A user service.
import { Database } from "./db";

/** A user of the system. */
export interface User {
  id: number;
  name: string;
  email?: string;
}

export type UserId = User["id"];

export enum Role {
  Admin = "admin",
  Member = "member",
}

/** Reads and writes users. */
export class UserService {
  private cache = new Map<UserId, User>();

  constructor(private readonly db: Database) {}

  /** Finds a user by id, from the cache when possible. */
  async find(id: UserId): Promise<User | undefined> {
    const hit = this.cache.get(id);
    if (hit) {
      return hit;
    }
    const user = await this.db.get<User>("users", id);
    if (user) {
      this.cache.set(id, user);
    }
    return user;
  }

  @logged
  async rename(id: UserId, name: string): Promise<void> {
    await this.db.update("users", id, { name });
    this.cache.delete(id);
  }
}

export namespace Users {
  export function display(user: User): string {
    return `${user.name} <${user.email ?? "no email"}>`;
  }
}

export function isAdmin(user: User, roles: Map<UserId, Role>): boolean {
  return roles.get(user.id) === Role.Admin;
}
