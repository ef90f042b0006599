# toygun: PGXS build. `make && make install`, then see README.md for the tests.

EXTENSION   = toygun
EXTVERSION  = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" $(EXTENSION).control)
MODULE_big  = toygun
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# The install script of the current version is built from the pieces in
# src/install/, one per concern, in this order. Released versions' scripts
# (toygun--0.1.sql) and the upgrade scripts between them (toygun--0.1--0.2.sql)
# are checked in, frozen.
INSTALL_PIECES = $(addprefix src/install/,schema.sql outcome.sql define.sql rights.sql failure.sql breaker.sql message.sql objects.sql \
                 worker.sql secret.sql schedule.sql triggers.sql alarms.sql outbox.sql grants.sql renames.sql versions.sql \
                 retention.sql queues.sql rate.sql flow.sql ops.sql outbox_ops.sql metrics.sql \
                 citus.sql)
DATA_built  = $(EXTENSION)--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard $(EXTENSION)--*.sql))

PG_CPPFLAGS = -Isrc
PG_CFLAGS   = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare \
              -Wno-missing-field-initializers
SHLIB_LINK  = -lsodium

# pg_regress (sql/ + expected/) and isolation (specs/ + expected/) run on
# temporary instances that preload toygun: run `make installcheck` as a
# non-root user, or use `bin/toygun test`, which does everything.
REGRESS        = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS   = --temp-instance=./tmp_check --temp-config=./test/regress.conf
ISOLATION      = $(patsubst specs/%.spec,%,$(sort $(wildcard specs/*.spec)))
ISOLATION_OPTS = --temp-instance=./tmp_check_iso --temp-config=./test/regress.conf
EXTRA_CLEAN    = tmp_check tmp_check_iso output_iso

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every C file includes the shared header; cron.c and schedule.c cron.h.
$(OBJS): src/toygun.h src/cron.h

$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PIECES) Makefile
	( printf '%s\n' '-- generated from src/install/*.sql by make; do not edit' \
	         '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  cat $(INSTALL_PIECES) ) > $@

# make dist: the PGXN distribution, HEAD's files (git archive) under one top
# folder, toygun-<version>/, in toygun-<version>.zip. PGXN wants a semantic
# version, so toygun.control's 0.4 is 0.4.0 there and in META.json
# (test/package/run.sh checks that they agree).
DISTVERSION = $(shell echo '$(EXTVERSION)' | sed -E 's/^([0-9]+\.[0-9]+)$$/\1.0/')
DISTDIR    ?= .
.PHONY: dist
dist:
	git archive --format=zip --prefix=$(EXTENSION)-$(DISTVERSION)/ \
		-o $(DISTDIR)/$(EXTENSION)-$(DISTVERSION).zip HEAD
	@echo $(DISTDIR)/$(EXTENSION)-$(DISTVERSION).zip
