import {
  ExecutionContext,
  ForbiddenException,
  InternalServerErrorException,
  ServiceUnavailableException,
  UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { GroupGuard } from './group.guard';
import { Groups } from './groups.decorator';
import { markSessionRequest } from './session-request';

@Groups('class-group')
class Target {
  @Groups('method-group')
  decorated() {}

  plain() {}

  @Groups({ param: 'groupId' }, 'fixed')
  byParam() {}
}
class Undecorated {
  open() {}
}

function context(handler: () => void, cls: object, req: Partial<Request>): ExecutionContext {
  return {
    getHandler: () => handler,
    getClass: () => cls,
    switchToHttp: () => ({ getRequest: () => req }),
  } as unknown as ExecutionContext;
}

function requestWith(session: Record<string, unknown> | undefined, params: Record<string, string> = {}): Partial<Request> {
  const req = { session, params } as unknown as Request;
  markSessionRequest(req, true);
  return req;
}

describe('GroupGuard metadata rules', () => {
  const guard = new GroupGuard(new Reflector());
  const check = (handler: () => void, cls: object, req: Partial<Request>) => guard.canActivate(context(handler, cls, req));
  const member = (...groups: string[]) => requestWith({ username: 'u', groups });

  it('a method decorator overrides the class decorator', () => {
    expect(check(Target.prototype.decorated, Target, member('method-group'))).toBe(true);
    expect(() => check(Target.prototype.decorated, Target, member('class-group'))).toThrow(ForbiddenException);
  });

  it('a method without a decorator takes the class decorator', () => {
    expect(check(Target.prototype.plain, Target, member('class-group'))).toBe(true);
    expect(() => check(Target.prototype.plain, Target, member('method-group'))).toThrow(ForbiddenException);
  });

  it('without any decorator a logged-in session is enough, an anonymous one is 401', () => {
    expect(check(Undecorated.prototype.open, Undecorated, member())).toBe(true);
    expect(() => check(Undecorated.prototype.open, Undecorated, requestWith({}))).toThrow(UnauthorizedException);
    expect(() => check(Undecorated.prototype.open, Undecorated, requestWith({ username: '' }))).toThrow(UnauthorizedException);
  });

  it('any one of the listed groups is enough; route parameters are resolved per request', () => {
    const req = (groups: string[], groupId?: string) => requestWith({ username: 'u', groups }, groupId ? { groupId } : {});
    expect(check(Target.prototype.byParam, Target, req(['g7'], 'g7'))).toBe(true);
    expect(check(Target.prototype.byParam, Target, req(['fixed'], 'g7'))).toBe(true);
    expect(() => check(Target.prototype.byParam, Target, req(['g8'], 'g7'))).toThrow(ForbiddenException);
    expect(() => check(Target.prototype.byParam, Target, req(['g7']))).toThrow(ForbiddenException);
  });

  it('ignores groups data that is not an array of strings', () => {
    expect(() => check(Target.prototype.plain, Target, requestWith({ username: 'u', groups: 'class-group' }))).toThrow(ForbiddenException);
    expect(() => check(Target.prototype.plain, Target, requestWith({ username: 'u', groups: [['class-group']] }))).toThrow(
      ForbiddenException,
    );
  });

  it('503 when the session store failed; 500 with a setup hint when the middleware never ran', () => {
    const down = { params: {} } as unknown as Request;
    markSessionRequest(down, false);
    expect(() => check(Target.prototype.plain, Target, down)).toThrow(ServiceUnavailableException);
    expect(() => check(Target.prototype.plain, Target, { params: {} } as Partial<Request>)).toThrow(InternalServerErrorException);
  });

  it('lets a subclass change where groups come from', () => {
    class HeaderGroupGuard extends GroupGuard {
      protected getGroups(req: Request): string[] {
        return String(req.headers['x-groups'] ?? '').split(',');
      }
    }
    const custom = new HeaderGroupGuard(new Reflector());
    const req = { ...requestWith({ username: 'u' }), headers: { 'x-groups': 'a,class-group' } } as unknown as Request;
    markSessionRequest(req, true);
    expect(custom.canActivate(context(Target.prototype.plain, Target, req))).toBe(true);
  });

  it('@Groups() refuses empty or malformed arguments when the code loads', () => {
    expect(() => Groups()).toThrow(TypeError);
    expect(() => Groups('')).toThrow(TypeError);
    expect(() => Groups({ param: '' })).toThrow(TypeError);
  });
});
