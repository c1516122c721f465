// The Nest side of the rivals of the Nest-side comparison (scenarios g and
// fg): a hand-written guard doing the same group check as the demo's
// cacheable group resource, and the same routes. Each rival app says how its
// session library's session is read and written.
import {
  CanActivate,
  Controller,
  ExecutionContext,
  ForbiddenException,
  Get,
  HttpCode,
  Injectable,
  Module,
  Param,
  Post,
  Req,
  Type,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { randomUUID } from 'node:crypto';

/** A rival's session on a request: the two values this app keeps in it. */
export interface RivalSession {
  get(req: unknown, key: 'username' | 'groups'): unknown;
  set(req: unknown, key: 'username' | 'groups', value: unknown): void;
}

/** The rival app's module: POST /app/login, GET /app/healthz, and the guarded group resource. */
export function plainModule(session: RivalSession): Type {
  /** 401 without a logged-in session, 403 unless the session is in the route's group. */
  @Injectable()
  class GroupParamGuard implements CanActivate {
    canActivate(context: ExecutionContext): boolean {
      const req = context.switchToHttp().getRequest<{ params: Record<string, string> }>();
      if (!session.get(req, 'username')) throw new UnauthorizedException();
      const groups = session.get(req, 'groups') as string[] | undefined;
      if (!groups?.includes(String(req.params.groupId))) throw new ForbiddenException();
      return true;
    }
  }

  @Controller('app')
  class PlainController {
    @Post('login')
    @HttpCode(204)
    login(@Req() req: unknown): void {
      session.set(req, 'username', 'joe@example.com');
      session.set(req, 'groups', ['one', 'three']);
    }

    @Get('healthz')
    healthz(): string {
      return 'ok';
    }

    @Get('api/v1/group/:groupId/cacheable/:resourceId')
    @UseGuards(GroupParamGuard)
    resource(@Param('groupId') groupId: string, @Param('resourceId') resourceId: string) {
      return { group_id: groupId, resource_id: resourceId, response_id: randomUUID(), origin_timestamp: Date.now() };
    }
  }

  @Module({ controllers: [PlainController] })
  class PlainModule {}
  return PlainModule;
}
