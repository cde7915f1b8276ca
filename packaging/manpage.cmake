# manpage.cmake: one man page from a command's --help (help2man), gzipped without a timestamp
# so that two builds give the same bytes. -DHELP2MAN -DCMD -DNAME -DWHAT -DVERSION -DPAGE -DOUT.
execute_process(COMMAND ${HELP2MAN} --no-info --no-discard-stderr --version-string=${VERSION}
                        --name=${WHAT} --output=${OUT} ${CMD}
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "help2man for '${NAME}' failed: ${err}")
endif()
# help2man names the program after the path it ran; the page is about the command.
file(READ ${OUT} page)
string(REGEX REPLACE "[^ \n\"]*/condenser" "condenser" page "${page}")
# The title is the page's (CONDENSER-DOCTOR), not the program's.
string(TOUPPER "${PAGE}" title)
string(REGEX REPLACE "\n\\.TH [^ ]+ " "\n.TH ${title} " page "${page}")
file(WRITE ${OUT} "${page}")
execute_process(COMMAND gzip -9 -n -f ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "gzip ${OUT} failed")
endif()
